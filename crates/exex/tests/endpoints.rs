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
        usage: Some(vec![(keccak256(code), CodeUsage { gas, frames: 1 })]),
    };
    Notification::Committed {
        new: Arc::new(Chain::new(vec![block])),
    }
}

fn service() -> Service {
    let runtime = Arc::new(Runtime::new(
        Backend::Jit,
        CompilePolicy::LookupOnly,
        CompileOptions::default(),
    ));
    let config = ServiceConfig {
        half_life_blocks: 1e12,
        hot_threshold_gas: 1_000,
        optimise_threshold_gas: 10_000,
        compile: CompileOptions::default(),
        isolation: false,
        ..ServiceConfig::default()
    };
    Service::new(runtime, config, None)
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
    let code = loop_code(61);
    let mut service = service();
    let status = SharedStatus::default();
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

    let _: () = client.request("kiln_pause", rpc_params![]).await.unwrap();
    assert!(service.control().is_paused());
    service.on_notification(&committed(1, &code, 5_000));
    status.publish(&service);
    let s: serde_json::Value = client.request("kiln_status", rpc_params![]).await.unwrap();
    assert_eq!(s["enabled"], true);
    assert_eq!(s["paused"], true);
    assert_eq!(s["snapshot"]["queueDepth"], 1, "{s}");
    assert_eq!(s["snapshot"]["head"], 1);
    assert_eq!(s["snapshot"]["stats"]["notifications"], 1);

    let _: () = client.request("kiln_resume", rpc_params![]).await.unwrap();
    assert!(!service.control().is_paused());
    assert!(service.wait_idle(Duration::from_secs(120)));
    status.publish(&service);
    let s: serde_json::Value = client.request("kiln_status", rpc_params![]).await.unwrap();
    assert_eq!(s["paused"], false);
    assert_eq!(s["snapshot"]["installedBaseline"], 1, "{s}");
    assert_eq!(s["snapshot"]["stats"]["compiledQuick"], 1);

    let _: () = client.request("kiln_clear", rpc_params![]).await.unwrap();
    service.poll();
    assert_eq!(service.installed((keccak256(&code), SPEC)), None);

    let _: () = client
        .request("kiln_setEnabled", rpc_params![false])
        .await
        .unwrap();
    assert!(!service.control().is_enabled());
    service.poll();
    status.publish(&service);
    let s: serde_json::Value = client.request("kiln_status", rpc_params![]).await.unwrap();
    assert_eq!(s["enabled"], false);
    assert_eq!(s["snapshot"]["serving"], false);
    assert_eq!(s["snapshot"]["installedBaseline"], 0);

    server.stop().unwrap();
    server.stopped().await;
    service.shutdown();
}
