//! Summaries over rounds, the markdown table, and the SVG plot.

use std::path::Path;

use anyhow::{Context as _, Result, anyhow};
use serde::Serialize;

/// Median, min and max of one figure over the rounds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Stat {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub n: usize,
}

impl Stat {
    pub fn of(values: &[f64]) -> Option<Self> {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Some(Self {
            median,
            min: v[0],
            max: v[n - 1],
            n,
        })
    }
}

/// One row of the results: a figure for the kernel, vxlan-fwd and, where
/// measured, the no-tunnel path (containers bridged onto the underlay).
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub key: String,
    pub label: String,
    pub unit: String,
    /// Values per round (in the row's unit), empty where not applicable.
    pub kernel_values: Vec<f64>,
    pub fwd_values: Vec<f64>,
    pub no_tunnel_values: Vec<f64>,
    pub kernel: Option<Stat>,
    pub vxlan_fwd: Option<Stat>,
    pub no_tunnel: Option<Stat>,
    /// vxlan-fwd median / kernel median.
    pub ratio: Option<f64>,
    /// vxlan-fwd median / no-tunnel median.
    pub ratio_no_tunnel: Option<f64>,
}

fn ratio(num: Option<Stat>, den: Option<Stat>) -> Option<f64> {
    match (num, den) {
        (Some(f), Some(k)) if k.median != 0.0 => Some(f.median / k.median),
        _ => None,
    }
}

impl Row {
    pub fn new(key: &str, label: &str, unit: &str, kernel: Vec<f64>, fwd: Vec<f64>) -> Self {
        let (k, f) = (Stat::of(&kernel), Stat::of(&fwd));
        Self {
            key: key.into(),
            label: label.into(),
            unit: unit.into(),
            kernel_values: kernel,
            fwd_values: fwd,
            no_tunnel_values: Vec::new(),
            kernel: k,
            vxlan_fwd: f,
            no_tunnel: None,
            ratio: ratio(f, k),
            ratio_no_tunnel: None,
        }
    }

    /// Adds the no-tunnel column and the vxlan-fwd / no-tunnel ratio.
    pub fn with_no_tunnel(mut self, values: Vec<f64>) -> Self {
        self.no_tunnel = Stat::of(&values);
        self.no_tunnel_values = values;
        self.ratio_no_tunnel = ratio(self.vxlan_fwd, self.no_tunnel);
        self
    }
}

/// A number with about 3 significant digits.
pub fn fmt_num(x: f64) -> String {
    let a = x.abs();
    if a == 0.0 {
        "0".into()
    } else if a >= 100.0 {
        format!("{x:.0}")
    } else if a >= 10.0 {
        format!("{x:.1}")
    } else if a >= 1.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.3}")
    }
}

fn fmt_stat(s: Option<Stat>) -> String {
    match s {
        None => "n/a".into(),
        Some(s) if s.n == 1 => fmt_num(s.median),
        Some(s) => format!(
            "{} ({}–{})",
            fmt_num(s.median),
            fmt_num(s.min),
            fmt_num(s.max)
        ),
    }
}

/// The markdown table: median (min–max) over the rounds.
pub fn markdown(rows: &[Row]) -> String {
    let mut t = String::from(
        "| figure | unit | kernel vxlan + bridge | vxlan-fwd | no tunnel (bridged underlay) \
         | vxlan-fwd / kernel | vxlan-fwd / no tunnel |\n\
         | --- | --- | ---: | ---: | ---: | ---: | ---: |\n",
    );
    let ratio = |x: Option<f64>| x.map_or_else(|| "–".into(), |x| format!("{x:.2}"));
    for r in rows {
        t.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} |\n",
            r.label,
            r.unit,
            fmt_stat(r.kernel),
            fmt_stat(r.vxlan_fwd),
            fmt_stat(r.no_tunnel),
            ratio(r.ratio),
            ratio(r.ratio_no_tunnel),
        ));
    }
    t
}

/// A group of bars in one panel of the plot.
pub struct Group {
    pub label: String,
    pub kernel: Option<Stat>,
    pub fwd: Option<Stat>,
    pub no_tunnel: Option<Stat>,
}

pub struct Panel {
    pub title: String,
    pub y_label: String,
    pub groups: Vec<Group>,
}

/// Grouped bars (median) with min–max whiskers, one panel per figure.
pub fn svg(path: &Path, title: &str, panels: &[Panel]) -> Result<()> {
    use plotters::{
        prelude::*,
        style::text_anchor::{HPos, Pos, VPos},
    };

    const KERNEL: RGBColor = RGBColor(0x4c, 0x72, 0xb0);
    const FWD: RGBColor = RGBColor(0xdd, 0x84, 0x52);
    const NO_TUNNEL: RGBColor = RGBColor(0x55, 0xa8, 0x68);
    let width = 520 * panels.len().max(1) as u32;
    let root = SVGBackend::new(path, (width, 480)).into_drawing_area();
    let err = |e: &dyn std::fmt::Display| anyhow!("drawing {}: {e}", path.display());
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let root = root
        .titled(title, ("sans-serif", 20))
        .map_err(|e| err(&e))?;
    let areas = root.split_evenly((1, panels.len().max(1)));
    for (area, panel) in areas.iter().zip(panels) {
        let top = panel
            .groups
            .iter()
            .flat_map(|g| [g.kernel, g.fwd, g.no_tunnel])
            .flatten()
            .map(|s| s.max)
            .fold(0.0f64, f64::max);
        // Headroom for the value labels and the legend.
        let top = if top > 0.0 { top * 1.35 } else { 1.0 };
        let n = panel.groups.len().max(1);
        let labels: Vec<String> = panel.groups.iter().map(|g| g.label.clone()).collect();
        let mut chart = ChartBuilder::on(area)
            .caption(&panel.title, ("sans-serif", 16))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(56)
            .build_cartesian_2d(0f64..n as f64, 0f64..top)
            .map_err(|e| err(&e))?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(n * 2 + 1)
            .x_label_formatter(&|x| {
                let i = x.floor() as usize;
                // Label only the centre of each group.
                if (x - i as f64 - 0.5).abs() < 1e-6 {
                    labels.get(i).cloned().unwrap_or_default()
                } else {
                    String::new()
                }
            })
            .y_desc(panel.y_label.as_str())
            .draw()
            .map_err(|e| err(&e))?;
        for (which, color, name) in [
            (0usize, KERNEL, "kernel vxlan + bridge"),
            (1, FWD, "vxlan-fwd"),
            (2, NO_TUNNEL, "no tunnel (bridged underlay)"),
        ] {
            let bars: Vec<(f64, Stat)> = panel
                .groups
                .iter()
                .enumerate()
                .filter_map(|(i, g)| {
                    let s = [g.kernel, g.fwd, g.no_tunnel][which]?;
                    let x0 = i as f64 + 0.08 + which as f64 * 0.28;
                    Some((x0, s))
                })
                .collect();
            chart
                .draw_series(bars.iter().map(|&(x0, s)| {
                    Rectangle::new([(x0, 0.0), (x0 + 0.26, s.median)], color.filled())
                }))
                .map_err(|e| err(&e))?
                .label(name)
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 6), (x + 12, y + 6)], color.filled())
                });
            for &(x0, s) in &bars {
                let xc = x0 + 0.13;
                let whisker = vec![
                    PathElement::new(vec![(xc, s.min), (xc, s.max)], BLACK.stroke_width(1)),
                    PathElement::new(
                        vec![(xc - 0.06, s.min), (xc + 0.06, s.min)],
                        BLACK.stroke_width(1),
                    ),
                    PathElement::new(
                        vec![(xc - 0.06, s.max), (xc + 0.06, s.max)],
                        BLACK.stroke_width(1),
                    ),
                ];
                chart.draw_series(whisker).map_err(|e| err(&e))?;
                let style = TextStyle::from(("sans-serif", 12).into_font())
                    .pos(Pos::new(HPos::Center, VPos::Bottom));
                chart
                    .draw_series(std::iter::once(Text::new(
                        fmt_num(s.median),
                        (xc, s.max + top * 0.01),
                        style,
                    )))
                    .map_err(|e| err(&e))?;
            }
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| err(&e))?;
    }
    root.present().map_err(|e| err(&e))?;
    std::fs::metadata(path).with_context(|| format!("{} was not written", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_min_max() {
        let s = Stat::of(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!((s.median, s.min, s.max, s.n), (2.0, 1.0, 3.0, 3));
        let s = Stat::of(&[4.0, 1.0, 2.0, 3.0]).unwrap();
        assert_eq!(s.median, 2.5);
        assert!(Stat::of(&[]).is_none());
        assert!(Stat::of(&[f64::NAN]).is_none());
    }

    #[test]
    fn table_and_ratio() {
        let rows = vec![
            Row::new(
                "a",
                "rate",
                "Mpps",
                vec![1.0, 2.0, 3.0],
                vec![2.0, 4.0, 6.0],
            ),
            Row::new("b", "cost", "ns", vec![], vec![10.0]),
            Row::new("c", "tcp", "Gbit/s", vec![1.0], vec![3.0]).with_no_tunnel(vec![2.0, 4.0]),
        ];
        assert_eq!(rows[0].ratio, Some(2.0));
        assert_eq!(rows[1].ratio, None);
        assert_eq!(rows[2].ratio_no_tunnel, Some(1.0));
        let t = markdown(&rows);
        assert!(
            t.contains("| rate | Mpps | 2.00 (1.00–3.00) | 4.00 (2.00–6.00) | n/a | 2.00 | – |"),
            "{t}"
        );
        assert!(
            t.contains("| cost | ns | n/a | 10.0 | n/a | – | – |"),
            "{t}"
        );
        assert!(
            t.contains("| tcp | Gbit/s | 1.00 | 3.00 | 3.00 (2.00–4.00) | 3.00 | 1.00 |"),
            "{t}"
        );
    }

    #[test]
    fn svg_is_written() {
        let dir = std::env::temp_dir().join(format!("xtask-bench-svg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.svg");
        let st = |x: f64| Stat::of(&[x * 0.9, x, x * 1.1]);
        let panels = [Panel {
            title: "rate".into(),
            y_label: "Mpps".into(),
            groups: vec![
                Group {
                    label: "base".into(),
                    kernel: st(1.0),
                    fwd: st(2.0),
                    no_tunnel: st(2.1),
                },
                Group {
                    label: "1M".into(),
                    kernel: st(0.8),
                    fwd: None,
                    no_tunnel: None,
                },
            ],
        }];
        svg(&path, "test", &panels).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("<svg"), "{}", &text[..100.min(text.len())]);
        assert!(text.contains("vxlan-fwd"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
