//! Charts drawn in the browser with charming (through the page's echarts),
//! kept per element so that new data updates a chart instead of redrawing
//! it, and clicks on a bar or slice reported to the page (drill-down).
//! The server renders only the chart's empty container.

use leptos::prelude::*;

/// Where a click landed: the series (e.g. a category in a stacked bar), the
/// item's name (an axis label or a slice) and its index in the data.
#[derive(Debug, Clone, PartialEq)]
pub struct ChartClick {
    /// Series name (`""` when the chart has one unnamed series).
    pub series: String,
    /// Category or slice name.
    pub name: String,
    /// Index of the item in its series.
    pub index: usize,
}

/// A chart's handle (browser-only storage; plain storage on the server,
/// where it stays empty).
#[cfg(feature = "hydrate")]
pub type ChartHandle = StoredValue<Option<charming::Echarts>, LocalStorage>;
/// A chart's handle (browser-only storage; plain storage on the server,
/// where it stays empty).
#[cfg(not(feature = "hydrate"))]
pub type ChartHandle = StoredValue<Option<()>>;

/// A new, empty handle.
pub fn handle() -> ChartHandle {
    #[cfg(feature = "hydrate")]
    return StoredValue::new_local(None);
    #[cfg(not(feature = "hydrate"))]
    return StoredValue::new(None);
}

/// Palette: categories and outcomes keep their colours across charts.
pub const PALETTE: [&str; 15] = [
    "#2966b8", "#e07b39", "#3a9d5d", "#c94f6d", "#7b61c4", "#2aa5a0", "#b8892b", "#5f7d95", "#d65f9e", "#8fa33b",
    "#4f86c6", "#a15c3e", "#6c6c6c", "#1f8a70", "#9b5de5",
];

/// The colour of an outcome.
pub fn outcome_color(outcome: &str) -> &'static str {
    match outcome {
        "success" => "#3a9d5d",
        "failure" => "#e07b39",
        "denied" => "#c94f6d",
        "error" => "#8b1e3f",
        _ => "#6c6c6c",
    }
}

/// Draws `chart` into the element `id` (height in pixels), or updates the
/// chart already there. `on_click` is registered when the chart is created.
#[cfg(feature = "hydrate")]
pub fn draw(
    id: &str,
    height: u32,
    chart: &charming::Chart,
    handle: ChartHandle,
    on_click: Option<std::rc::Rc<dyn Fn(ChartClick)>>,
) {
    use wasm_bindgen::JsCast as _;
    use wasm_bindgen::closure::Closure;
    let Some(el) = web_sys::window().and_then(|w| w.document()).and_then(|d| d.get_element_by_id(id)) else {
        return;
    };
    // A chart whose element was replaced (the page re-rendered) starts again.
    let alive = handle.with_value(|e| {
        e.as_ref().is_some_and(|e| {
            js_sys::Reflect::get(e.as_ref(), &"getDom".into())
                .ok()
                .and_then(|f| f.dyn_into::<js_sys::Function>().ok())
                .and_then(|f| f.call0(e.as_ref()).ok())
                .is_some_and(|d| js_sys::Object::is(&d, el.as_ref()))
        })
    });
    if alive {
        handle.with_value(|e| {
            if let Some(e) = e {
                charming::WasmRenderer::update(e, chart);
            }
        });
        return;
    }
    let width = (el.get_bounding_client_rect().width() as u32).max(200);
    let Ok(e) = charming::WasmRenderer::new(width, height).render(id, chart) else { return };
    if let Some(f) = on_click {
        let cb = Closure::<dyn FnMut(wasm_bindgen::JsValue)>::new(move |p: wasm_bindgen::JsValue| {
            let get = |k: &str| js_sys::Reflect::get(&p, &k.into()).ok();
            f(ChartClick {
                series: get("seriesName").and_then(|v| v.as_string()).unwrap_or_default(),
                name: get("name").and_then(|v| v.as_string()).unwrap_or_default(),
                index: get("dataIndex").and_then(|v| v.as_f64()).unwrap_or(0.0) as usize,
            });
        });
        if let Some(on) =
            js_sys::Reflect::get(e.as_ref(), &"on".into()).ok().and_then(|f| f.dyn_into::<js_sys::Function>().ok())
        {
            let _ = on.call2(e.as_ref(), &"click".into(), cb.as_ref());
        }
        // The chart lives as long as the page: so does its listener.
        cb.forget();
    }
    handle.set_value(Some(e));
}

/// A stacked bar chart over time: one series per name.
#[cfg(feature = "hydrate")]
pub fn stacked(labels: Vec<String>, series: &[(String, Vec<f64>, String)], percent: bool) -> charming::Chart {
    use charming::component::{Axis, Grid, Legend};
    use charming::element::{AxisLabel, AxisType, Color, ItemStyle, Tooltip, Trigger};
    use charming::series::Bar;
    let mut chart = charming::Chart::new()
        .animation(false)
        .tooltip(Tooltip::new().trigger(Trigger::Axis))
        .legend(Legend::new().bottom(0).type_(charming::component::LegendType::Scroll))
        .grid(Grid::new().left(52).right(16).top(12).bottom(56))
        .x_axis(Axis::new().type_(AxisType::Category).data(labels).axis_label(AxisLabel::new().font_size(10)))
        .y_axis(
            Axis::new()
                .type_(AxisType::Value)
                .min_interval(1)
                .axis_label(AxisLabel::new().font_size(10).formatter(if percent { "{value} %" } else { "{value}" })),
        );
    for (name, data, color) in series {
        chart = chart.series(
            Bar::new()
                .name(name.as_str())
                .stack("all")
                .data(data.clone())
                .item_style(ItemStyle::new().color(Color::from(color.as_str()))),
        );
    }
    chart
}

/// A line chart over time.
#[cfg(feature = "hydrate")]
pub fn lines(labels: Vec<String>, series: &[(String, Vec<f64>, String)], unit: &str) -> charming::Chart {
    use charming::component::{Axis, Grid, Legend};
    use charming::element::{AxisLabel, AxisType, Color, ItemStyle, LineStyle, Tooltip, Trigger};
    use charming::series::Line;
    let mut chart = charming::Chart::new()
        .animation(false)
        .tooltip(Tooltip::new().trigger(Trigger::Axis))
        .legend(Legend::new().bottom(0))
        .grid(Grid::new().left(52).right(16).top(12).bottom(48))
        .x_axis(Axis::new().type_(AxisType::Category).data(labels).axis_label(AxisLabel::new().font_size(10)))
        .y_axis(
            Axis::new()
                .type_(AxisType::Value)
                .axis_label(AxisLabel::new().font_size(10).formatter(format!("{{value}}{unit}").as_str())),
        );
    for (name, data, color) in series {
        chart = chart.series(
            Line::new()
                .name(name.as_str())
                .data(data.clone())
                .show_symbol(false)
                .item_style(ItemStyle::new().color(Color::from(color.as_str())))
                .line_style(LineStyle::new().color(Color::from(color.as_str()))),
        );
    }
    chart
}

/// A horizontal bar chart of named values (largest on top), optionally
/// stacked by outcome: `series` = (name, values in `names` order, colour).
#[cfg(feature = "hydrate")]
pub fn ranked(names: Vec<String>, series: &[(String, Vec<f64>, String)]) -> charming::Chart {
    use charming::component::{Axis, Grid, Legend};
    use charming::element::{AxisLabel, AxisType, Color, ItemStyle, Tooltip, Trigger};
    use charming::series::Bar;
    let mut names = names;
    names.reverse();
    let mut chart = charming::Chart::new()
        .animation(false)
        .tooltip(Tooltip::new().trigger(Trigger::Axis))
        .grid(Grid::new().left(150).right(24).top(8).bottom(if series.len() > 1 { 36 } else { 20 }))
        .x_axis(Axis::new().type_(AxisType::Value).min_interval(1).axis_label(AxisLabel::new().font_size(10)))
        .y_axis(Axis::new().type_(AxisType::Category).data(names).axis_label(AxisLabel::new().font_size(10)));
    if series.len() > 1 {
        chart = chart.legend(Legend::new().bottom(0));
    }
    for (name, data, color) in series {
        let mut d = data.clone();
        d.reverse();
        chart = chart.series(
            Bar::new()
                .name(name.as_str())
                .stack("all")
                .data(d)
                .item_style(ItemStyle::new().color(Color::from(color.as_str()))),
        );
    }
    chart
}

/// A doughnut of named values with their colours.
#[cfg(feature = "hydrate")]
pub fn doughnut(items: &[(String, f64, String)]) -> charming::Chart {
    use charming::component::Legend;
    use charming::element::{Tooltip, Trigger};
    use charming::series::Pie;
    let colors: Vec<charming::element::Color> =
        items.iter().map(|(_, _, c)| charming::element::Color::from(c.as_str())).collect();
    charming::Chart::new()
        .animation(false)
        .color(colors)
        .tooltip(Tooltip::new().trigger(Trigger::Item))
        .legend(Legend::new().bottom(0))
        .series(
            Pie::new()
                .radius(vec!["45%", "70%"])
                .center(vec!["50%", "45%"])
                .data(items.iter().map(|(n, v, _)| (*v, n.as_str())).collect::<Vec<_>>()),
        )
}
