//! A small SVG line chart (polylines on linear axes), enough for the convergence and scale plots.

use std::fmt::Write as _;

/// One line of the chart.
pub struct Series {
    /// Legend text.
    pub label: String,
    /// CSS colour.
    pub color: &'static str,
    /// Dashed (for bounds).
    pub dashed: bool,
    /// Stroke width.
    pub width: f64,
    /// Whether it gets a legend entry (several runs share one).
    pub legend: bool,
    /// Points in data coordinates.
    pub points: Vec<(f64, f64)>,
}

/// A chart with linear axes from `x_min` to `x_max` and from 0 to `y_max`.
pub struct Chart {
    /// Title above the plot.
    pub title: String,
    /// X axis label.
    pub x_label: String,
    /// Y axis label.
    pub y_label: String,
    /// Smallest x shown.
    pub x_min: f64,
    /// Largest x shown.
    pub x_max: f64,
    /// Formats an x tick.
    pub x_format: fn(f64) -> String,
    /// Largest y shown.
    pub y_max: f64,
    /// Formats a y tick.
    pub y_format: fn(f64) -> String,
    /// The lines.
    pub series: Vec<Series>,
}

const W: f64 = 720.0;
const H: f64 = 420.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 55.0;

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A "nice" tick step giving about `target` ticks up to `max`.
fn tick_step(max: f64, target: f64) -> f64 {
    let raw = (max / target).max(f64::MIN_POSITIVE);
    let magnitude = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * magnitude)
}

impl Chart {
    /// The SVG document.
    pub fn render(&self) -> String {
        let pw = W - LEFT - RIGHT;
        let ph = H - TOP - BOTTOM;
        let span = (self.x_max - self.x_min).max(f64::MIN_POSITIVE);
        let x = |v: f64| LEFT + ((v - self.x_min) / span).clamp(0.0, 1.05) * pw;
        let y = |v: f64| TOP + ph - (v / self.y_max).clamp(0.0, 1.05) * ph;
        let mut s = String::new();
        let _ = writeln!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
        );
        let _ = writeln!(s, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
        let _ = writeln!(
            s,
            r#"<text x="{}" y="22" text-anchor="middle" font-size="15" font-weight="bold">{}</text>"#,
            W / 2.0,
            escape(&self.title)
        );
        let step = tick_step(span, 8.0);
        let mut v = self.x_min;
        while v <= self.x_max + step * 1e-9 {
            let _ = writeln!(
                s,
                r##"<line x1="{0:.1}" y1="{1:.1}" x2="{0:.1}" y2="{2:.1}" stroke="#e5e5e5"/><text x="{0:.1}" y="{3:.1}" text-anchor="middle">{4}</text>"##,
                x(v),
                TOP,
                TOP + ph,
                TOP + ph + 16.0,
                escape(&(self.x_format)(v))
            );
            v += step;
        }
        let step = tick_step(self.y_max, 5.0);
        let mut v = 0.0;
        while v <= self.y_max + step * 1e-9 {
            let _ = writeln!(
                s,
                r##"<line x1="{0:.1}" y1="{1:.1}" x2="{2:.1}" y2="{1:.1}" stroke="#e5e5e5"/><text x="{3:.1}" y="{4:.1}" text-anchor="end">{5}</text>"##,
                LEFT,
                y(v),
                LEFT + pw,
                LEFT - 6.0,
                y(v) + 4.0,
                escape(&(self.y_format)(v))
            );
            v += step;
        }
        let _ = writeln!(
            s,
            r##"<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="#555"/>"##
        );
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
            LEFT + pw / 2.0,
            H - 14.0,
            escape(&self.x_label)
        );
        let _ = writeln!(
            s,
            r#"<text x="16" y="{0}" text-anchor="middle" transform="rotate(-90 16 {0})">{1}</text>"#,
            TOP + ph / 2.0,
            escape(&self.y_label)
        );
        for series in &self.series {
            let points: Vec<String> = series
                .points
                .iter()
                .map(|(px, py)| format!("{:.1},{:.1}", x(*px), y(*py)))
                .collect();
            let dash = if series.dashed {
                r#" stroke-dasharray="6 4""#
            } else {
                ""
            };
            let _ = writeln!(
                s,
                r#"<polyline fill="none" stroke="{}" stroke-width="{}"{dash} points="{}"/>"#,
                series.color,
                series.width,
                points.join(" ")
            );
        }
        let mut ly =
            TOP + ph - 12.0 - 18.0 * self.series.iter().filter(|s| s.legend).count() as f64;
        for series in self.series.iter().filter(|s| s.legend) {
            ly += 18.0;
            let dash = if series.dashed {
                r#" stroke-dasharray="6 4""#
            } else {
                ""
            };
            let lx = LEFT + pw - 250.0;
            let _ = writeln!(
                s,
                r#"<line x1="{lx:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{}" stroke-width="2"{dash}/><text x="{:.1}" y="{:.1}">{}</text>"#,
                lx + 24.0,
                series.color,
                lx + 30.0,
                ly + 4.0,
                escape(&series.label)
            );
        }
        s.push_str("</svg>\n");
        s
    }
}

/// A tick value without trailing zeros.
pub fn trim(v: f64) -> String {
    let text = format!("{v:.2}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}
