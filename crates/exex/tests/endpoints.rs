//! Around the service: the TOML config file, the metrics it records and the `kiln_` JSON-RPC
//! control endpoint.

use jsonrpsee::core::{client::ClientT, rpc_params};
use jsonrpsee_http_client::HttpClientBuilder;
use kiln_compiler::CompileOptions;
use kiln_exex::{
    metrics, rpc, BlockRecord, Chain, ConfigError, Notification, Service, ServiceConfig,
    SharedStatus,
};
use kiln_runtime::{Backend, BlockId, CodeUsage, CompilePolicy, Runtime, Tier};
use metrics_util::{
    debugging::{DebugValue, DebuggingRecorder},
    CompositeKey,
};
use revm::primitives::{hardfork::SpecId, keccak256, Address, Bytes, B256};
use std::{sync::Arc, time::Duration};

const SPEC: SpecId = SpecId::CANCUN;

/// One metric of a [`DebuggingRecorder`] snapshot.
type Metric = (
    CompositeKey,
    Option<::metrics::Unit>,
    Option<::metrics::SharedString>,
    DebugValue,
);
const KILN_TOML: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../etc/kiln.toml");
const METRICS_RS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src/metrics.rs");
const GRAFANA_JSON: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../etc/grafana/kiln.json");
const PROMETHEUS_YML: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../etc/prometheus.yml");

/// A counting loop from `n` down to zero: code worth compiling, distinct per `n`.
fn loop_code(n: u16) -> Vec<u8> {
    let [hi, lo] = n.to_be_bytes();
    vec![
        0x61, hi, lo, 0x5b, 0x60, 0x01, 0x90, 0x03, 0x80, 0x60, 0x03, 0x57, 0x00,
    ]
}

/// Block `number`, deploying `code` and spending `gas` in it.
fn committed(number: u64, code: &[u8], gas: u64) -> Notification {
    let hash = |n: u64| B256::left_padding_from(&n.to_be_bytes());
    let block = BlockRecord {
        number,
        hash: hash(number),
        parent_hash: hash(number - 1),
        id: BlockId {
            number,
            timestamp: 1_000 + 12 * number,
            beneficiary: Address::with_last_byte(1),
            prevrandao: None,
            gas_limit: 30_000_000,
            basefee: 7,
        },
        spec: SPEC,
        deployed: vec![(keccak256(code), Bytes::copy_from_slice(code))],
        usage: Some(vec![(
            keccak256(code),
            CodeUsage {
                gas,
                frames: 1,
                ..CodeUsage::default()
            },
        )]),
    };
    Notification::Committed {
        new: Arc::new(Chain::new(vec![block])),
    }
}

fn config() -> ServiceConfig {
    ServiceConfig {
        half_life_blocks: 1e12,
        hot_threshold_gas: 1_000,
        optimise_threshold_gas: 10_000,
        compile: CompileOptions::default(),
        isolation: false,
        // Verification has tests of its own (tests/verify.rs).
        verify_runs: 0,
        ..ServiceConfig::default()
    }
}

fn service_with(config: ServiceConfig) -> Service {
    let runtime = Arc::new(Runtime::new(
        Backend::Jit,
        CompilePolicy::LookupOnly,
        CompileOptions::default(),
    ));
    Service::new(runtime, config, None)
}

fn service() -> Service {
    service_with(config())
}

#[test]
fn etc_kiln_toml_documents_every_knob_with_its_default() {
    let config = ServiceConfig::load(KILN_TOML).unwrap();
    // `compile` is not in the file; Debug compares it too.
    assert_eq!(
        format!("{config:?}"),
        format!("{:?}", ServiceConfig::default())
    );
    let text = std::fs::read_to_string(KILN_TOML).unwrap();
    let file: toml::Table = toml::from_str(&text).unwrap();
    let knobs = toml::Table::try_from(ServiceConfig::default()).unwrap();
    let names = |t: &toml::Table| t.keys().cloned().collect::<Vec<_>>();
    assert_eq!(names(&file), names(&knobs), "every knob is in the file");
}

#[test]
fn config_keeps_defaults_for_missing_knobs_and_rejects_unknown_or_invalid_ones() {
    let config =
        ServiceConfig::from_toml_str("hot-threshold = 5000\nhalf-life-blocks = 8.5\n").unwrap();
    assert_eq!(config.hot_threshold_gas, 5_000);
    assert_eq!(config.half_life_blocks, 8.5);
    assert_eq!(config.worker_count, ServiceConfig::default().worker_count);
    assert!(config.compile.skip_unprofitable);
    assert!(matches!(
        ServiceConfig::from_toml_str("hot-threshold-gas = 1"),
        Err(ConfigError::Toml(_))
    ));
    assert!(matches!(
        ServiceConfig::from_toml_str("worker-count = -1"),
        Err(ConfigError::Toml(_))
    ));
    assert!(matches!(
        ServiceConfig::from_toml_str("half-life-blocks = 0.0"),
        Err(ConfigError::Invalid(_))
    ));
    assert!(matches!(
        ServiceConfig::load("/nonexistent/kiln.toml"),
        Err(ConfigError::Io(_))
    ));
}

/// The value of the metric `name` whose labels are `labels`.
fn metric<'a>(
    snapshot: &'a [Metric],
    name: &str,
    labels: &[(&str, &str)],
) -> Option<&'a DebugValue> {
    snapshot
        .iter()
        .find(|(key, _, _, _)| {
            let key = key.key();
            key.name() == name
                && key.labels().count() == labels.len()
                && key.labels().all(|l| labels.contains(&(l.key(), l.value())))
        })
        .map(|(_, _, _, value)| value)
}

#[test]
fn a_compilation_is_counted_timed_and_its_code_gauged() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let code = loop_code(60);
    let mut service = service();
    ::metrics::with_local_recorder(&recorder, || {
        service.on_notification(&committed(1, &code, 5_000));
        assert!(service.wait_idle(Duration::from_secs(120)));
    });
    assert_eq!(
        service.installed((keccak256(&code), SPEC)),
        Some(Tier::Baseline)
    );
    // A snapshot resets the recorder's counters: take one.
    let snapshot = snapshotter.snapshot().into_vec();
    let baseline = [("tier", "baseline")];
    assert_eq!(
        metric(&snapshot, metrics::NOTIFICATIONS, &[]),
        Some(&DebugValue::Counter(1))
    );
    assert_eq!(
        metric(&snapshot, metrics::COMPILATIONS, &baseline),
        Some(&DebugValue::Counter(1))
    );
    assert_eq!(
        metric(&snapshot, metrics::COMPILATIONS, &[("tier", "optimised")]),
        None
    );
    match metric(&snapshot, metrics::COMPILE_SECONDS, &baseline) {
        Some(DebugValue::Histogram(samples)) => {
            assert_eq!(samples.len(), 1);
            assert!(samples[0].into_inner() > 0.0);
        }
        other => panic!("compile time histogram: {other:?}"),
    }
    let gauge = |name, labels: &[(&str, &str)]| match metric(&snapshot, name, labels) {
        Some(DebugValue::Gauge(v)) => v.into_inner(),
        other => panic!("{name}: {other:?}"),
    };
    assert_eq!(gauge(metrics::INSTALLED_CODES, &baseline), 1.0);
    assert_eq!(
        gauge(metrics::INSTALLED_CODES, &[("tier", "optimised")]),
        0.0
    );
    assert_eq!(gauge(metrics::QUEUE_DEPTH, &[]), 0.0);
    assert_eq!(gauge(metrics::JOBS_IN_FLIGHT, &[]), 0.0);
    service.shutdown();
}

#[test]
fn objects_loaded_from_the_cache_at_start_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let config = ServiceConfig {
        cache_dir: Some(dir.path().join("cache")),
        ..config()
    };
    let code = loop_code(63);
    // Not the global recorder, which the Prometheus test checks.
    ::metrics::with_local_recorder(&::metrics::NoopRecorder, || {
        let mut service = service_with(config.clone());
        service.on_notification(&committed(1, &code, 5_000));
        assert!(service.wait_idle(Duration::from_secs(120)));
        service.shutdown();
    });

    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let service = ::metrics::with_local_recorder(&recorder, || service_with(config));
    assert_eq!(service.stats().cache_loads, 1);
    let snapshot = snapshotter.snapshot().into_vec();
    assert_eq!(
        metric(&snapshot, metrics::CACHE_LOADS, &[]),
        Some(&DebugValue::Counter(1))
    );
    service.shutdown();
}

/// The metric names `metrics.rs` defines (its `pub const NAME: &str = "kiln.…";` items), read
/// from the source so that a metric added there without a dashboard panel fails the test below.
fn defined_metrics() -> Vec<String> {
    let source = std::fs::read_to_string(METRICS_RS).unwrap();
    let names: Vec<String> = source
        .lines()
        .filter(|l| l.starts_with("pub const ") && l.contains(": &str = \"kiln."))
        .filter_map(|l| Some(l.split('"').nth(1)?.to_owned()))
        .collect();
    for name in [
        metrics::NOTIFICATIONS,
        metrics::COMPILATIONS,
        metrics::COMPILE_FAILURES,
        metrics::COMPILE_SECONDS,
        metrics::QUEUE_DEPTH,
        metrics::JOBS_IN_FLIGHT,
        metrics::DROPPED_JOBS,
        metrics::EXPIRED_REPORTS,
        metrics::INSTALLED_CODES,
        metrics::CACHE_LOADS,
    ] {
        assert!(
            names.iter().any(|n| n == name),
            "{name} read from metrics.rs"
        );
    }
    names
}

/// Every `expr` (a panel's PromQL query) anywhere in `value`.
fn exprs<'a>(value: &'a serde_json::Value, found: &mut Vec<&'a str>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("expr", serde_json::Value::String(expr)) => found.push(expr),
                    _ => exprs(v, found),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| exprs(v, found)),
        _ => {}
    }
}

#[test]
fn the_grafana_dashboard_charts_every_metric_and_prometheus_scrapes_the_exporter() {
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(GRAFANA_JSON).unwrap()).unwrap();
    assert_eq!(dashboard["__inputs"][0]["name"], "DS_PROMETHEUS");
    let panels = dashboard["panels"].as_array().unwrap();
    let mut found = Vec::new();
    for panel in panels.iter().filter(|p| p["type"] != "row") {
        assert_eq!(panel["datasource"]["uid"], "${DS_PROMETHEUS}", "{panel}");
        let mut own = Vec::new();
        exprs(panel, &mut own);
        assert!(!own.is_empty(), "a query in {}", panel["title"]);
        found.extend(own);
    }
    // The series the queries name, as the exporter renders them (dots become underscores, no
    // `_total` suffix; a histogram is `_bucket`, `_sum` and `_count`).
    let series: Vec<&str> = found
        .iter()
        .flat_map(|e| e.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':')))
        .filter(|t| t.starts_with("kiln_"))
        .collect();
    let defined = defined_metrics();
    let rendered: Vec<String> = defined.iter().map(|n| n.replace('.', "_")).collect();
    let base = |s: &str| {
        rendered
            .iter()
            .find(|r| {
                s == r.as_str()
                    || ["_bucket", "_sum", "_count"]
                        .iter()
                        .any(|suffix| s.strip_prefix(r.as_str()) == Some(suffix))
            })
            .cloned()
    };
    for s in &series {
        assert!(
            base(s).is_some(),
            "the dashboard queries {s}, which metrics.rs does not define"
        );
    }
    for r in &rendered {
        assert!(
            series.iter().any(|s| base(s).as_ref() == Some(r)),
            "no panel of etc/grafana/kiln.json charts {r}"
        );
    }
    // The compile-time histogram is charted through its buckets (quantiles).
    let histogram = metrics::COMPILE_SECONDS.replace('.', "_");
    assert!(found
        .iter()
        .any(|e| e.contains("histogram_quantile") && e.contains(&format!("{histogram}_bucket"))));

    let scrape = std::fs::read_to_string(PROMETHEUS_YML).unwrap();
    assert!(scrape.contains("job_name: kiln"));
    assert!(scrape.contains("scrape_interval: 5s"));
    let target = format!("- {}", metrics::DEFAULT_PROMETHEUS_ADDR);
    assert!(
        scrape.lines().any(|l| l.trim() == target),
        "etc/prometheus.yml scrapes {target}"
    );
    assert_eq!(metrics::DEFAULT_PROMETHEUS_ADDR.port(), 9101);
}

/// The Prometheus endpoint renders the service's metrics, compile times as a histogram with
/// buckets. (It installs the process's global recorder; the other tests record locally.)
#[cfg(feature = "prometheus")]
#[test]
fn prometheus_endpoint_serves_the_metrics() {
    use std::io::{Read, Write};
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    metrics::install_prometheus(addr).unwrap();
    let code = loop_code(62);
    let mut service = service();
    service.on_notification(&committed(1, &code, 5_000));
    assert!(service.wait_idle(Duration::from_secs(120)));
    service.shutdown();
    let scrape = || {
        let mut stream = std::net::TcpStream::connect(addr).ok()?;
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .ok()?;
        let mut text = String::new();
        stream.read_to_string(&mut text).ok()?;
        Some(text)
    };
    // The listener starts on a background thread.
    let mut text = None;
    for _ in 0..100 {
        text = scrape();
        if text.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let text = text.expect("the endpoint answers");
    // Other tests of this binary may add to the counts meanwhile: at least one of each.
    for series in [
        "kiln_notifications",
        "kiln_compilations{tier=\"baseline\"}",
        "kiln_installed_codes{tier=\"baseline\"}",
        "kiln_compile_seconds_bucket{tier=\"baseline\",le=\"+Inf\"}",
    ] {
        let value = text
            .lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .and_then(|v| v.parse::<f64>().ok());
        assert!(value >= Some(1.0), "{series} in\n{text}");
    }
    assert!(text.contains("# HELP kiln_queue_depth Jobs waiting in the compile queue"));
    assert!(text.contains("kiln_compile_seconds_bucket{tier=\"baseline\",le=\"0.01\"}"));
}

#[tokio::test]
async fn rpc_drives_the_control_and_reports_the_status() {
    // The service's gauges stay off the global recorder, which the Prometheus test checks (the
    // runtime of this test is single-threaded: the guard covers every poll).
    let _recorder = ::metrics::set_default_local_recorder(&::metrics::NoopRecorder);
    let code = loop_code(61);
    let mut service = service();
    let status = SharedStatus::default();
    // The service publishes after every poll and notification: nobody here publishes by hand.
    service.set_status_sink(status.clone());
    let (addr, server) = rpc::serve(
        "127.0.0.1:0".parse().unwrap(),
        service.control(),
        status.clone(),
    )
    .await
    .unwrap();
    assert!(addr.ip().is_loopback() && addr.port() != 0);
    let client = HttpClientBuilder::default()
        .build(format!("http://{addr}"))
        .unwrap();

    let s: serde_json::Value = client.request("kiln_status", rpc_params![]).await.unwrap();
    assert_eq!(
        s["snapshot"]["serving"], true,
        "published when the sink was set: {s}"
    );
    assert_eq!(s["snapshot"]["stats"]["notifications"], 0);

    let _: () = client.request("kiln_pause", rpc_params![]).await.unwrap();
    assert!(service.control().is_paused());
    service.on_notification(&committed(1, &code, 5_000));
    let s: serde_json::Value = client.request("kiln_status", rpc_params![]).await.unwrap();
    assert_eq!(s["enabled"], true);
    assert_eq!(s["paused"], true);
    assert_eq!(s["snapshot"]["queueDepth"], 1, "{s}");
    assert_eq!(s["snapshot"]["head"], 1);
    assert_eq!(s["snapshot"]["stats"]["notifications"], 1);

    let _: () = client.request("kiln_resume", rpc_params![]).await.unwrap();
    assert!(!service.control().is_paused());
    assert!(service.wait_idle(Duration::from_secs(120)));
    let s: serde_json::Value = client.request("kiln_status", rpc_params![]).await.unwrap();
    assert_eq!(s["paused"], false);
    assert_eq!(s["snapshot"]["installedBaseline"], 1, "{s}");
    assert_eq!(s["snapshot"]["stats"]["compiledQuick"], 1);

    let _: () = client.request("kiln_clear", rpc_params![]).await.unwrap();
    service.poll();
    assert_eq!(service.installed((keccak256(&code), SPEC)), None);
    let s: serde_json::Value = client.request("kiln_status", rpc_params![]).await.unwrap();
    assert_eq!(s["snapshot"]["installedBaseline"], 0, "{s}");
    assert_eq!(s["snapshot"]["serving"], true);

    let _: () = client
        .request("kiln_setEnabled", rpc_params![false])
        .await
        .unwrap();
    assert!(!service.control().is_enabled());
    service.poll();
    let s: serde_json::Value = client.request("kiln_status", rpc_params![]).await.unwrap();
    assert_eq!(s["enabled"], false);
    assert_eq!(s["snapshot"]["serving"], false);

    server.stop().unwrap();
    server.stopped().await;
    service.shutdown();
}
