//! The E/T/L stacked bars: one SVG per function, one bar per input size × backend, stacked
//! Extract (bottom), Transform, Load medians (warm invocations), in milliseconds.

use std::path::{Path, PathBuf};

use anyhow::Result;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

use super::agent::Summary as AgentSummary;
use super::cachestats::Summary;
use super::stats::Cell;
use crate::plot::{err, finish, COLORS};

/// A chart of MiB against seconds (the memory-over-time plots).
type TimeChart<'a> = ChartContext<'a, SVGBackend<'a>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

const PARTS: [(&str, RGBColor); 3] = [
    ("Extract (read input)", RGBColor(31, 119, 180)),
    ("Transform", RGBColor(255, 127, 14)),
    ("Load (write output)", RGBColor(44, 160, 44)),
];

/// Writes `<stem>.etl-<function>.svg` for each function of `cells`; the files written.
pub fn etl_bars(stem: &Path, cells: &[Cell]) -> Result<Vec<PathBuf>> {
    let mut functions: Vec<&str> = cells.iter().map(|c| c.function.as_str()).collect();
    functions.dedup();
    let mut out = Vec::new();
    for f in functions {
        let cs: Vec<&Cell> = cells.iter().filter(|c| c.function == f).collect();
        let path = PathBuf::from(format!("{}.etl-{f}.svg", stem.display()));
        one(&path, f, &cs)?;
        out.push(path);
    }
    Ok(out)
}

fn one(path: &Path, function: &str, cs: &[&Cell]) -> Result<()> {
    let top = cs
        .iter()
        .map(|c| c.extract.p50 + c.transform.p50 + c.load.p50)
        .fold(0.0, f64::max)
        .max(1.0)
        * 1.15;
    let n = cs.len();
    let width = (160 + 70 * n as u32).clamp(480, 2400);
    let root = SVGBackend::new(path, (width, 520)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let labels: Vec<String> = cs
        .iter()
        .map(|c| format!("{} {}", c.size, c.backend))
        .collect();
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("{function}: E / T / L medians per input size and backend"),
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(70)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..n as f64, 0f64..top)
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        // Key points every half bar; a bar's label goes at its centre (i + 0.5).
        .x_labels(2 * n + 1)
        .x_label_formatter(&|x| {
            if (x.fract() - 0.5).abs() < 1e-6 {
                labels.get(x.floor() as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .y_desc("milliseconds (median, warm)")
        .draw()
        .map_err(err)?;
    for (k, (name, color)) in PARTS.iter().enumerate() {
        let bars = cs.iter().enumerate().map(|(i, c)| {
            let parts = [c.extract.p50, c.transform.p50, c.load.p50];
            let base: f64 = parts[..k].iter().sum();
            let x = i as f64;
            Rectangle::new(
                [(x + 0.15, base), (x + 0.85, base + parts[k])],
                color.filled(),
            )
        });
        let c = *color;
        chart
            .draw_series(bars)
            .map_err(err)?
            .label(*name)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], c.filled()));
    }
    finish(&mut chart, &root, SeriesLabelPosition::UpperLeft)
}

/// Writes `<stem>.cache.svg`: each cached backend's live log bytes (solid) and dirty bytes
/// (dotted) over the run, MiB against seconds, with the masters' budget in the title. `None`
/// when no backend has samples.
pub fn cache_memory(stem: &Path, runs: &[(String, Summary)]) -> Result<Option<PathBuf>> {
    let runs: Vec<&(String, Summary)> = runs.iter().filter(|r| !r.1.samples.is_empty()).collect();
    if runs.is_empty() {
        return Ok(None);
    }
    const MIB: f64 = (1u64 << 20) as f64;
    let xmax = runs
        .iter()
        .flat_map(|r| r.1.samples.iter().map(|s| s.t_s))
        .fold(1.0, f64::max);
    let ymax = runs
        .iter()
        .flat_map(|r| r.1.samples.iter().map(|s| s.live_bytes.max(s.dirty_bytes)))
        .max()
        .unwrap_or(0) as f64
        / MIB
        * 1.15
        + 1.0;
    let budget = runs.iter().map(|r| r.1.budget_bytes).max().unwrap_or(0) as f64 / MIB;
    let path = PathBuf::from(format!("{}.cache.svg", stem.display()));
    let caption = format!("cache memory over the run (masters' budget {budget:.0} MiB)");
    let y_desc = "MiB: live log (solid), dirty (dotted)";
    let legend = SeriesLabelPosition::UpperLeft;
    over_time(&path, &caption, y_desc, (xmax, ymax), legend, |chart| {
        for (i, (name, sum)) in runs.iter().map(|r| (&r.0, &r.1)).enumerate() {
            let c = COLORS[i % COLORS.len()];
            chart
                .draw_series(LineSeries::new(
                    sum.samples
                        .iter()
                        .map(|s| (s.t_s, s.live_bytes as f64 / MIB)),
                    c.stroke_width(2),
                ))
                .map_err(err)?
                .label(format!("{name} live"))
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2))
                });
            chart
                .draw_series(
                    sum.samples
                        .iter()
                        .map(|s| Circle::new((s.t_s, s.dirty_bytes as f64 / MIB), 2, c.filled())),
                )
                .map_err(err)?
                .label(format!("{name} dirty"))
                .legend(move |(x, y)| Circle::new((x + 9, y), 2, c.filled()));
        }
        Ok(())
    })?;
    Ok(Some(path))
}

/// The chart both memory plots share: `caption`, MiB (`y_desc`) against seconds, up to
/// `xmax` × `ymax`; `draw` adds the series; the legend at `legend`; written to `path`.
fn over_time(
    path: &Path,
    caption: &str,
    y_desc: &str,
    (xmax, ymax): (f64, f64),
    legend: SeriesLabelPosition,
    draw: impl FnOnce(&mut TimeChart<'_>) -> Result<()>,
) -> Result<()> {
    let root = SVGBackend::new(path, (900, 520)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..xmax, 0.0..ymax)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("seconds since the backend's run started")
        .y_desc(y_desc)
        .draw()
        .map_err(err)?;
    draw(&mut chart)?;
    finish(&mut chart, &root, legend)
}

/// Writes `<stem>.agent.svg`: for each backend run with the node agent, the cache's budget
/// (solid), the sandboxes' reserved memory (dashed) and their observed memory (dots) over the
/// run, MiB against seconds. `None` when no backend has samples.
pub fn agent_memory(stem: &Path, runs: &[(String, AgentSummary)]) -> Result<Option<PathBuf>> {
    let runs: Vec<&(String, AgentSummary)> =
        runs.iter().filter(|r| !r.1.samples.is_empty()).collect();
    if runs.is_empty() {
        return Ok(None);
    }
    const MIB: f64 = (1u64 << 20) as f64;
    let xmax = runs
        .iter()
        .flat_map(|r| r.1.samples.iter().map(|s| s.t_s))
        .fold(1.0, f64::max);
    let ymax = runs
        .iter()
        .flat_map(|r| {
            r.1.samples
                .iter()
                .map(|s| s.budget_bytes.max(s.reserved_bytes).max(s.observed_bytes))
        })
        .max()
        .unwrap_or(0) as f64
        / MIB
        * 1.15
        + 1.0;
    let path = PathBuf::from(format!("{}.agent.svg", stem.display()));
    let caption = "node agent: cache budget vs sandbox memory over the run";
    let y_desc = "MiB: cache budget (solid), sandboxes reserved (dashed), observed (dots)";
    let legend = SeriesLabelPosition::UpperRight;
    over_time(&path, caption, y_desc, (xmax, ymax), legend, |chart| {
        for (i, (name, sum)) in runs.iter().map(|r| (&r.0, &r.1)).enumerate() {
            let c = COLORS[i % COLORS.len()];
            let series = |f: fn(&super::agent::Sample) -> u64| {
                sum.samples
                    .iter()
                    .map(move |s| (s.t_s, f(s) as f64 / MIB))
                    .collect::<Vec<_>>()
            };
            chart
                .draw_series(LineSeries::new(
                    series(|s| s.budget_bytes),
                    c.stroke_width(2),
                ))
                .map_err(err)?
                .label(format!("{name} cache budget"))
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2))
                });
            chart
                .draw_series(DashedLineSeries::new(
                    series(|s| s.reserved_bytes),
                    6,
                    4,
                    c.stroke_width(2),
                ))
                .map_err(err)?
                .label(format!("{name} sandboxes reserved"))
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 6, y)], c.stroke_width(2))
                });
            chart
                .draw_series(
                    series(|s| s.observed_bytes)
                        .into_iter()
                        .map(|p| Circle::new(p, 2, c.filled())),
                )
                .map_err(err)?
                .label(format!("{name} sandboxes observed"))
                .legend(move |(x, y)| Circle::new((x + 9, y), 2, c.filled()));
        }
        Ok(())
    })?;
    Ok(Some(path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::faas::stats::{cells, Record};

    #[test]
    fn writes_one_svg_per_function() {
        let r = |f: &str, b: &str| Record {
            backend: b.into(),
            function: f.into(),
            size: "16KB".into(),
            input_bytes: 16384,
            extract_ms: 10.0,
            transform_ms: 2.0,
            load_ms: 8.0,
            run_ms: 21.0,
            cold_ms: None,
            queued_ms: 0.0,
            connect_ms: 0.0,
        };
        let rs = vec![
            r("blur", "swift"),
            r("blur", "gateway"),
            r("thumbnail", "swift"),
        ];
        let cs = cells(&rs, &["swift".into(), "gateway".into()], "swift");
        let d = tempfile::tempdir().unwrap();
        let files = etl_bars(&d.path().join("run"), &cs).unwrap();
        assert_eq!(files.len(), 2);
        let svg = std::fs::read_to_string(&files[0]).unwrap();
        assert!(
            svg.contains("<svg") && svg.contains("blur"),
            "{}",
            &svg[..200.min(svg.len())]
        );
    }

    #[test]
    fn cache_memory_plots_the_sampled_backends_only() {
        use crate::faas::cachestats::{summarize, Sample};
        let d = tempfile::tempdir().unwrap();
        let stem = d.path().join("run");
        assert!(cache_memory(&stem, &[("swift".into(), Summary::default())])
            .unwrap()
            .is_none());
        let s = |t: f64, live: u64| Sample {
            t_s: t,
            budget_bytes: 1 << 30,
            live_bytes: live,
            dirty_bytes: live / 4,
            ..Sample::default()
        };
        let sum = summarize(vec![s(0.0, 1 << 20), s(1.0, 8 << 20), s(2.0, 6 << 20)], 0);
        let path = cache_memory(&stem, &[("gateway".into(), sum)])
            .unwrap()
            .unwrap();
        let svg = std::fs::read_to_string(path).unwrap();
        assert!(
            svg.contains("<svg") && svg.contains("gateway live"),
            "{}",
            &svg[..200]
        );
    }

    #[test]
    fn agent_memory_plots_the_backends_with_samples() {
        use crate::faas::agent::{summarize, Sample};
        let d = tempfile::tempdir().unwrap();
        let stem = d.path().join("run");
        assert!(
            agent_memory(&stem, &[("gateway".into(), AgentSummary::default())])
                .unwrap()
                .is_none()
        );
        let s = |t: f64, budget: u64, reserved: u64| Sample {
            t_s: t,
            budget_bytes: budget,
            reserved_bytes: reserved,
            observed_bytes: reserved / 2,
            ..Sample::default()
        };
        let sum = summarize(
            vec![s(0.0, 512 << 20, 0), s(1.0, 256 << 20, 300 << 20)],
            0,
            None,
        );
        let path = agent_memory(&stem, &[("faascache".into(), sum)])
            .unwrap()
            .unwrap();
        assert_eq!(path, d.path().join("run.agent.svg"));
        let svg = std::fs::read_to_string(path).unwrap();
        assert!(
            svg.contains("<svg")
                && svg.contains("faascache cache budget")
                && svg.contains("faascache sandboxes reserved"),
            "{}",
            &svg[..200]
        );
    }
}
