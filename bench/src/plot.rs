//! SVG plots (plotters, SVG backend only): latency CDFs and latency vs throughput.

use crate::report::Record;
use anyhow::{anyhow, Result};
use plotters::prelude::*;
use std::path::{Path, PathBuf};

pub(crate) const COLORS: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

/// A named series of (ops/s, p50 µs, p99 µs) points.
pub type ThroughputSeries = (String, Vec<(f64, f64, f64)>);

/// A plotters error as ours.
pub(crate) fn err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("plot: {e:?}")
}

/// Draws the legend (boxed, at `pos`) and writes the file.
pub(crate) fn finish<'a, CT: plotters::coord::CoordTranslate>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, CT>,
    root: &DrawingArea<SVGBackend<'a>, plotters::coord::Shift>,
    pos: SeriesLabelPosition,
) -> Result<()> {
    chart
        .configure_series_labels()
        .position(pos)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

/// CDF plot: x = latency (µs, log scale), y = fraction of requests ≤ x.
pub fn cdf_svg(path: &Path, title: &str, series: &[(String, Vec<(f64, f64)>)]) -> Result<()> {
    let pts: Vec<f64> = series
        .iter()
        .flat_map(|s| s.1.iter().map(|p| p.0))
        .filter(|x| *x > 0.0)
        .collect();
    if pts.is_empty() {
        return Ok(());
    }
    let lo = pts.iter().copied().fold(f64::INFINITY, f64::min).max(0.01) * 0.8;
    let hi = pts.iter().copied().fold(0.0, f64::max) * 1.25;
    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d((lo..hi).log_scale(), 0.0..1.0)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("latency (µs, log scale)")
        .y_desc("fraction of requests ≤ latency")
        .draw()
        .map_err(err)?;
    for (i, (name, s)) in series.iter().enumerate() {
        let c = COLORS[i % COLORS.len()];
        chart
            .draw_series(LineSeries::new(
                s.iter().filter(|p| p.0 > 0.0).map(|p| (p.0, p.1)),
                c.stroke_width(2),
            ))
            .map_err(err)?
            .label(name.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2)));
    }
    finish(&mut chart, &root, SeriesLabelPosition::LowerRight)
}

/// Latency vs throughput: one p50 line (solid) and one p99 line (dots) per series.
/// Points are (ops/s, p50 µs, p99 µs).
pub fn latency_throughput_svg(path: &Path, title: &str, series: &[ThroughputSeries]) -> Result<()> {
    let all: Vec<&(f64, f64, f64)> = series.iter().flat_map(|s| s.1.iter()).collect();
    if all.is_empty() {
        return Ok(());
    }
    let xmax = all.iter().map(|p| p.0).fold(0.0, f64::max) * 1.1 + 1.0;
    let ymin = all
        .iter()
        .map(|p| p.1)
        .filter(|y| *y > 0.0)
        .fold(f64::INFINITY, f64::min)
        .max(0.01)
        * 0.8;
    let ymax = all.iter().map(|p| p.2.max(p.1)).fold(0.0, f64::max) * 1.25 + 0.01;
    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..xmax, (ymin..ymax.max(ymin * 2.0)).log_scale())
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("throughput (ops/s)")
        .y_desc("latency (µs, log): p50 solid, p99 dotted")
        .draw()
        .map_err(err)?;
    for (i, (name, s)) in series.iter().enumerate() {
        let c = COLORS[i % COLORS.len()];
        let mut pts = s.clone();
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        chart
            .draw_series(LineSeries::new(
                pts.iter().map(|p| (p.0, p.1.max(ymin))),
                c.stroke_width(2),
            ))
            .map_err(err)?
            .label(format!("{name} p50"))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2)));
        chart
            .draw_series(
                pts.iter()
                    .map(|p| Circle::new((p.0, p.2.max(ymin)), 3, c.filled())),
            )
            .map_err(err)?;
        chart
            .draw_series(LineSeries::new(
                pts.iter().map(|p| (p.0, p.2.max(ymin))),
                c.stroke_width(1),
            ))
            .map_err(err)?;
    }
    finish(&mut chart, &root, SeriesLabelPosition::UpperLeft)
}

/// Writes the standard plots for a set of records into `dir`; returns the files written.
/// One CDF per test (each driver/variant a line, at most 8), and a latency-vs-throughput plot
/// for tests with several throughput points (client counts, sweeps).
pub fn write_all(dir: &Path, records: &[Record]) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut files = Vec::new();
    let mut tests: Vec<&str> = Vec::new();
    for r in records {
        if !tests.contains(&r.test.as_str()) && r.test != "memory" {
            tests.push(&r.test);
        }
    }
    for t in tests {
        let rs: Vec<&Record> = records
            .iter()
            .filter(|r| r.test == t && !r.cdf.is_empty())
            .collect();
        if rs.is_empty() {
            continue;
        }
        let series: Vec<(String, Vec<(f64, f64)>)> = rs
            .iter()
            .take(8)
            .map(|r| (format!("{} {}", r.driver, r.variant), r.cdf.clone()))
            .collect();
        let p = dir.join(format!("{t}-cdf.svg"));
        cdf_svg(&p, &format!("{t}: latency CDF"), &series)?;
        files.push(p);
        // latency vs throughput, per driver
        let mut drivers: Vec<&str> = Vec::new();
        for r in &rs {
            if !drivers.contains(&r.driver.as_str()) {
                drivers.push(&r.driver);
            }
        }
        let lt: Vec<ThroughputSeries> = drivers
            .iter()
            .map(|d| {
                (
                    d.to_string(),
                    rs.iter()
                        .filter(|r| r.driver == *d && r.ops_per_sec > 0.0)
                        .map(|r| (r.ops_per_sec, r.p50_us, r.p99_us))
                        .collect(),
                )
            })
            .collect();
        if lt.iter().any(|s| s.1.len() >= 2) || t.contains("Throughput") || t.starts_with("ycsb") {
            let p = dir.join(format!("{t}-latency-vs-throughput.svg"));
            latency_throughput_svg(&p, &format!("{t}: latency vs throughput"), &lt)?;
            files.push(p);
        }
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_svgs() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let cdf = vec![(10.0, 0.0), (20.0, 0.5), (40.0, 0.99), (100.0, 1.0)];
        let p = dir.join("c.svg");
        cdf_svg(
            &p,
            "t",
            &[
                ("a".into(), cdf.clone()),
                ("b".into(), vec![(15.0, 0.1), (30.0, 1.0)]),
            ],
        )
        .unwrap();
        let s = std::fs::read_to_string(&p).unwrap();
        assert!(s.starts_with("<svg") && s.contains("polyline"));
        let q = dir.join("l.svg");
        latency_throughput_svg(
            &q,
            "t",
            &[("a".into(), vec![(1000.0, 10.0, 20.0), (5000.0, 12.0, 40.0)])],
        )
        .unwrap();
        assert!(std::fs::read_to_string(&q).unwrap().contains("<svg"));
        let recs = vec![Record {
            test: "readThroughput".into(),
            driver: "redis".into(),
            cdf,
            ops_per_sec: 1000.0,
            p50_us: 20.0,
            p99_us: 40.0,
            ..Default::default()
        }];
        let files = write_all(&dir.join("all"), &recs).unwrap();
        assert_eq!(files.len(), 2);
    }
}
