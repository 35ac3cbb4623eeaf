//! The demo's picture: EVM Mgas/s per block for both imports, with the service's compilations
//! marked at the block where they were installed.

use crate::run::{Report, Run};
use kiln_runtime::Tier;
use plotters::prelude::*;
use std::path::Path;

/// Blocks averaged per point, so that the lines show the trend rather than each block's noise.
const WINDOW: usize = 5;

/// Moving average of each block's EVM throughput, by block number, after the setup blocks
/// (deployments, whose gas is mostly code deposit rather than execution).
fn series(run: &Run, setup_blocks: u64) -> Vec<(f64, f64)> {
    let points: Vec<(f64, f64)> = run
        .blocks
        .iter()
        .filter(|b| !b.execution.is_zero() && b.number > setup_blocks)
        .map(|b| {
            (
                b.number as f64,
                b.gas_used as f64 / 1e6 / b.execution.as_secs_f64(),
            )
        })
        .collect();
    points
        .windows(WINDOW.min(points.len()).max(1))
        .map(|w| {
            let x = w[w.len() / 2].0;
            (x, w.iter().map(|p| p.1).sum::<f64>() / w.len() as f64)
        })
        .collect()
}

/// Draws `report` as an SVG at `path`.
pub fn draw(path: &Path, report: &Report) -> Result<(), String> {
    let setup = report.generated.setup_blocks as u64;
    let interpreter = series(&report.interpreter, setup);
    let kiln = series(&report.kiln, setup);
    let max_x = report
        .kiln
        .blocks
        .iter()
        .map(|b| b.number)
        .max()
        .unwrap_or(1) as f64;
    let max_y = interpreter
        .iter()
        .chain(&kiln)
        .map(|p| p.1)
        .fold(1.0, f64::max)
        * 1.35;
    let root = SVGBackend::new(path, (1200, 600)).into_drawing_area();
    let err = |e: &dyn std::fmt::Display| e.to_string();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "kiln demo: EVM Mgas/s per block ({}-block average); EVM {:.2}x, import {:.2}x",
                WINDOW,
                report.evm_speedup(),
                report.import_speedup()
            ),
            ("sans-serif", 22),
        )
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..max_x + 1.0, 0.0..max_y)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc("block")
        .y_desc("EVM Mgas/s")
        .draw()
        .map_err(|e| err(&e))?;
    for event in &report.kiln.compiles {
        let color = match event.tier {
            Tier::Optimised => RGBColor(200, 60, 40),
            _ => RGBColor(240, 170, 60),
        };
        let x = event.head as f64;
        chart
            .draw_series(LineSeries::new(
                [(x, 0.0), (x, max_y)],
                color.mix(0.5).stroke_width(1),
            ))
            .map_err(|e| err(&e))?;
    }
    chart
        .draw_series(LineSeries::new(interpreter, BLUE.stroke_width(2)))
        .map_err(|e| err(&e))?
        .label("interpreter (revm)")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], BLUE.stroke_width(2)));
    chart
        .draw_series(LineSeries::new(kiln, GREEN.stroke_width(2)))
        .map_err(|e| err(&e))?
        .label("kiln (hot-code service)")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], GREEN.stroke_width(2)));
    let quick = RGBColor(240, 170, 60);
    let optimised = RGBColor(200, 60, 40);
    chart
        .draw_series(std::iter::empty::<PathElement<(f64, f64)>>())
        .map_err(|e| err(&e))?
        .label("quick-tier compilation installed")
        .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], quick.stroke_width(2)));
    chart
        .draw_series(std::iter::empty::<PathElement<(f64, f64)>>())
        .map_err(|e| err(&e))?
        .label("optimised compilation installed")
        .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], optimised.stroke_width(2)));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}
