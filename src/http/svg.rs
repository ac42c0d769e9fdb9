//! A minimal SVG chart (axes, bars, lines, points, legend) for the plots the API serves
//! (`?format=svg`): reliability diagrams and Pareto fronts, viewable in any browser.

use std::fmt::Write;

const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 480.0;
const MARGIN: f64 = 60.0;

/// A chart with linear axes over fixed ranges.
pub struct Chart {
    title: String,
    x_label: String,
    y_label: String,
    x: (f64, f64),
    y: (f64, f64),
    body: String,
    legend: Vec<(String, String)>,
}

impl Chart {
    pub fn new(title: &str, x_label: &str, y_label: &str, x: (f64, f64), y: (f64, f64)) -> Self {
        let widen = |(lo, hi): (f64, f64)| {
            if hi > lo {
                (lo, hi)
            } else {
                (lo - 0.5, lo + 0.5)
            }
        };
        Chart {
            title: escape(title),
            x_label: escape(x_label),
            y_label: escape(y_label),
            x: widen(x),
            y: widen(y),
            body: String::new(),
            legend: Vec::new(),
        }
    }

    fn px(&self, x: f64) -> f64 {
        MARGIN + (x - self.x.0) / (self.x.1 - self.x.0) * (WIDTH - 2.0 * MARGIN)
    }

    fn py(&self, y: f64) -> f64 {
        HEIGHT - MARGIN - (y - self.y.0) / (self.y.1 - self.y.0) * (HEIGHT - 2.0 * MARGIN)
    }

    /// A bar from `x0` to `x1` rising to `y`.
    pub fn bar(&mut self, x0: f64, x1: f64, y: f64, colour: &str, opacity: f64) {
        let (left, right, top, base) = (self.px(x0), self.px(x1), self.py(y), self.py(self.y.0));
        let _ = write!(
            self.body,
            r#"<rect x="{left:.2}" y="{top:.2}" width="{:.2}" height="{:.2}" fill="{colour}" fill-opacity="{opacity}" stroke="white"/>"#,
            (right - left).max(0.0),
            (base - top).max(0.0)
        );
    }

    /// A polyline through `points`.
    pub fn line(&mut self, points: &[(f64, f64)], colour: &str, dashed: bool) {
        let path: Vec<String> = points
            .iter()
            .map(|&(x, y)| format!("{:.2},{:.2}", self.px(x), self.py(y)))
            .collect();
        let dash = if dashed {
            r#" stroke-dasharray="6 4""#
        } else {
            ""
        };
        let _ = write!(
            self.body,
            r#"<polyline points="{}" fill="none" stroke="{colour}" stroke-width="2"{dash}/>"#,
            path.join(" ")
        );
    }

    /// Dots at `points`.
    pub fn points(&mut self, points: &[(f64, f64)], colour: &str, radius: f64) {
        for &(x, y) in points {
            let _ = write!(
                self.body,
                r#"<circle cx="{:.2}" cy="{:.2}" r="{radius}" fill="{colour}" fill-opacity="0.7"/>"#,
                self.px(x),
                self.py(y)
            );
        }
    }

    pub fn legend(&mut self, label: &str, colour: &str) {
        self.legend.push((escape(label), colour.to_string()));
    }

    pub fn render(&self) -> String {
        let mut s = format!(
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12"><rect width="100%" height="100%" fill="white"/>"#
        );
        let _ = write!(
            s,
            r#"<text x="{}" y="24" text-anchor="middle" font-size="15">{}</text>"#,
            WIDTH / 2.0,
            self.title
        );
        let (x0, x1, y0, y1) = (MARGIN, WIDTH - MARGIN, HEIGHT - MARGIN, MARGIN);
        let _ = write!(
            s,
            r#"<path d="M{x0},{y1} V{y0} H{x1}" fill="none" stroke="black"/>"#
        );
        for i in 0..=4 {
            let t = i as f64 / 4.0;
            let (xv, yv) = (
                self.x.0 + t * (self.x.1 - self.x.0),
                self.y.0 + t * (self.y.1 - self.y.0),
            );
            let _ = write!(
                s,
                r#"<text x="{:.2}" y="{}" text-anchor="middle">{}</text>"#,
                self.px(xv),
                y0 + 18.0,
                tick(xv)
            );
            let _ = write!(
                s,
                r#"<text x="{}" y="{:.2}" text-anchor="end">{}</text>"#,
                x0 - 6.0,
                self.py(yv) + 4.0,
                tick(yv)
            );
        }
        let _ = write!(
            s,
            r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
            WIDTH / 2.0,
            HEIGHT - 16.0,
            self.x_label
        );
        let _ = write!(
            s,
            r#"<text transform="translate(16 {}) rotate(-90)" text-anchor="middle">{}</text>"#,
            HEIGHT / 2.0,
            self.y_label
        );
        s.push_str(&self.body);
        for (i, (label, colour)) in self.legend.iter().enumerate() {
            let y = MARGIN + 8.0 + 18.0 * i as f64;
            let _ = write!(
                s,
                r#"<rect x="{}" y="{}" width="12" height="12" fill="{colour}"/><text x="{}" y="{}">{label}</text>"#,
                x0 + 10.0,
                y - 10.0,
                x0 + 28.0,
                y
            );
        }
        s.push_str("</svg>");
        s
    }
}

/// A short tick label.
fn tick(v: f64) -> String {
    if v.abs() >= 1e4 || (v != 0.0 && v.abs() < 1e-2) {
        format!("{v:.2e}")
    } else {
        format!("{}", (v * 100.0).round() / 100.0)
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
