//! `--plot FILE.svg`: latency and CPU over the measurement window, one point per second.

use std::fmt::Write;

use crate::scenario::TimelinePoint;

const WIDTH: f64 = 760.0;
const PANEL: f64 = 220.0;
const LEFT: f64 = 60.0;
const TOP: f64 = 40.0;
const GAP: f64 = 60.0;

struct Series<'a> {
    label: &'a str,
    colour: &'a str,
    values: Vec<Option<f64>>,
}

/// An SVG with two panels: latency p50/p99 (ms), and server and client CPU (cores).
pub fn svg(title: &str, points: &[TimelinePoint]) -> String {
    let t: Vec<f64> = points.iter().map(|p| p.t_s).collect();
    let mut out = String::new();
    let height = TOP + 2.0 * PANEL + GAP + 40.0;
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = write!(
        out,
        r#"<rect width="100%" height="100%" fill="white"/><text x="{LEFT}" y="20" font-size="14">{}</text>"#,
        escape(title)
    );
    panel(
        &mut out,
        TOP,
        "latency (ms)",
        &t,
        &[
            Series {
                label: "p50",
                colour: "#1f77b4",
                values: points.iter().map(|p| p.latency_p50_ms).collect(),
            },
            Series {
                label: "p99",
                colour: "#d62728",
                values: points.iter().map(|p| p.latency_p99_ms).collect(),
            },
        ],
    );
    panel(
        &mut out,
        TOP + PANEL + GAP,
        "CPU (cores)",
        &t,
        &[
            Series {
                label: "server",
                colour: "#2ca02c",
                values: points.iter().map(|p| p.server_cpu_cores).collect(),
            },
            Series {
                label: "client",
                colour: "#ff7f0e",
                values: points.iter().map(|p| Some(p.client_cpu_cores)).collect(),
            },
        ],
    );
    out.push_str("</svg>\n");
    out
}

fn panel(out: &mut String, top: f64, label: &str, t: &[f64], series: &[Series<'_>]) {
    let plot_w = WIDTH - LEFT - 20.0;
    let t_max = t.iter().copied().fold(1.0, f64::max);
    let y_max = series
        .iter()
        .flat_map(|s| s.values.iter().flatten())
        .copied()
        .fold(0.0, f64::max)
        .max(1e-3)
        * 1.1;
    let x = |v: f64| LEFT + v / t_max * plot_w;
    let y = |v: f64| top + PANEL - v / y_max * PANEL;
    let _ = write!(
        out,
        r##"<rect x="{LEFT}" y="{top}" width="{plot_w}" height="{PANEL}" fill="none" stroke="#888"/>"##
    );
    let _ = write!(
        out,
        r#"<text x="{LEFT}" y="{}">{label}</text><text x="5" y="{}">{y_max:.2}</text><text x="5" y="{}">0</text><text x="{}" y="{}">{t_max:.0} s</text>"#,
        top - 6.0,
        top + 12.0,
        top + PANEL,
        LEFT + plot_w - 30.0,
        top + PANEL + 16.0
    );
    for (i, s) in series.iter().enumerate() {
        let points: Vec<String> = t
            .iter()
            .zip(&s.values)
            .filter_map(|(&t, v)| v.map(|v| format!("{:.1},{:.1}", x(t), y(v))))
            .collect();
        let _ = write!(
            out,
            r#"<polyline fill="none" stroke="{}" stroke-width="1.5" points="{}"/><text x="{}" y="{}" fill="{}">{}</text>"#,
            s.colour,
            points.join(" "),
            LEFT + 10.0 + 80.0 * i as f64,
            top + 16.0,
            s.colour,
            s.label
        );
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_every_series_and_skips_missing_points() {
        let points: Vec<TimelinePoint> = (1..=3)
            .map(|i| TimelinePoint {
                t_s: f64::from(i),
                latency_p50_ms: Some(1.0),
                latency_p99_ms: if i == 2 { None } else { Some(3.0) },
                server_cpu_cores: Some(0.5),
                client_cpu_cores: 0.2,
                packets_received: 100,
            })
            .collect();
        let svg = svg("a <test>", &points);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 4);
        assert!(svg.contains("a &lt;test&gt;"));
    }
}
