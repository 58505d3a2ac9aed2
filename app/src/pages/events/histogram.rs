//! The histogram: events per bucket over the period; dragging across it
//! narrows the period.

use super::*;

/// Events per bucket over the period; dragging across narrows it.
#[component]
pub(super) fn HistogramView(
    resolved: RwSignal<String>,
    go: impl Fn(Filters) + Clone + Send + Sync + 'static,
    filters: Memo<Filters>,
) -> impl IntoView {
    let data = RwSignal::new(None::<Result<Histogram, ClientError>>);
    Effect::new(move |_| {
        let api = resolved.get();
        if api.is_empty() && filters.get_untracked().range.is_empty() {
            return;
        }
        leptos::task::spawn_local(async move {
            let h = get_json::<Histogram>(&format!("/api/audit/histogram?{api}&buckets=60")).await;
            data.set(Some(h));
        });
    });
    // One chart per page: later data updates it (a second `init` on the
    // same element would draw into the old, detached instance).
    // Browser-only storage (the handle is a JS object); the server never
    // draws, and local storage dropped on another server thread panics.
    #[cfg(feature = "hydrate")]
    let chart: ChartStore = StoredValue::new_local(None);
    #[cfg(not(feature = "hydrate"))]
    let chart: ChartStore = StoredValue::new(None);
    Effect::new(move |_| {
        if let Some(Ok(h)) = data.get() {
            draw_histogram(&h, chart);
        }
    });
    // Drag selection, as fractions of the plot's width.
    let drag = RwSignal::new(None::<(f64, f64)>);
    let width = move |ev: &leptos::ev::PointerEvent| -> f64 {
        use leptos::wasm_bindgen::JsCast as _;
        ev.current_target()
            .and_then(|t| t.dyn_into::<leptos::web_sys::Element>().ok())
            .map_or(1.0, |el| f64::from(el.client_width()).max(1.0))
    };
    let frac = move |ev: &leptos::ev::PointerEvent| (f64::from(ev.offset_x()) / width(ev)).clamp(0.0, 1.0);
    let finish = move |ev: leptos::ev::PointerEvent| {
        let Some((a, _)) = drag.get_untracked() else { return };
        let b = frac(&ev);
        drag.set(None);
        let (lo, hi) = if a < b { (a, b) } else { (b, a) };
        if hi - lo < 0.01 {
            return;
        }
        let Some(Ok(h)) = data.get_untracked() else { return };
        let (from, to) = (parse_ms(&h.from), parse_ms(&h.to));
        let span = to - from;
        let mut f = filters.get_untracked();
        f.range = String::new();
        f.from = iso(from + span * lo);
        f.to = iso(from + span * hi);
        go(f);
    };
    view! {
        <section class="histogram" aria-label="Events over time" data-testid="histogram">
            {move || match data.get() {
                Some(Ok(h)) => view! {
                    <div class="hist-meta muted">
                        {format!("{} matching {}, {} per bar", h.total, if h.total == 1 { "event" } else { "events" }, duration(h.bucket_seconds))}
                        " · drag across the chart to narrow the period"
                        {move || filters.with(|f| f.values.contains_key("q")).then_some(" (free text not counted)")}
                    </div>
                }.into_any(),
                Some(Err(e)) => view! { <div class="error" role="alert">{format!("The histogram failed: {e}")}</div> }.into_any(),
                None => view! { <div class="hist-meta muted">"Loading the histogram…"</div> }.into_any(),
            }}
            <div class="hist-frame">
                <div id="histogram-chart" class="hist-chart"></div>
                <div class="hist-brush" data-testid="histogram-brush"
                    on:pointerdown=move |ev| { let f = frac(&ev); drag.set(Some((f, f))); }
                    on:pointermove=move |ev| { if let Some((a, _)) = drag.get_untracked() { drag.set(Some((a, frac(&ev)))); } }
                    on:pointerup=finish
                    on:pointerleave=move |_| drag.set(None)>
                    {move || drag.get().map(|(a, b)| {
                        let (lo, hi) = if a < b { (a, b) } else { (b, a) };
                        view! { <div class="hist-selection" style:left=format!("{:.2}%", lo * 100.0) style:width=format!("{:.2}%", (hi - lo) * 100.0)></div> }
                    })}
                </div>
            </div>
        </section>
    }
}

/// Grid margins of the chart, in pixels: the brush covers the plot only.
#[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
pub(super) const CHART_LEFT: u32 = 48;
#[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
pub(super) const CHART_RIGHT: u32 = 12;

#[cfg(feature = "hydrate")]
pub(super) type ChartStore = StoredValue<Option<charming::Echarts>, LocalStorage>;
#[cfg(not(feature = "hydrate"))]
pub(super) type ChartStore = StoredValue<Option<()>>;

#[cfg(feature = "hydrate")]
pub(super) fn draw_histogram(h: &Histogram, handle: ChartStore) {
    use charming::component::{Axis, Grid};
    use charming::element::{AxisLabel, AxisType, Color, ItemStyle, Tooltip, Trigger};
    use charming::series::Bar;
    let Some(el) = web_sys::window().and_then(|w| w.document()).and_then(|d| d.get_element_by_id("histogram-chart"))
    else {
        return;
    };
    let width = (el.get_bounding_client_rect().width() as u32).max(200);
    let span_ms = h.bucket_seconds as f64 * 1000.0 * h.series.len() as f64;
    let labels: Vec<String> =
        h.series.iter().map(|b| super::browser::chart_label(&b.start, span_ms > 2.0 * 86_400_000.0)).collect();
    let counts: Vec<i64> = h.series.iter().map(|b| b.count as i64).collect();
    let chart = charming::Chart::new()
        .animation(false)
        .tooltip(Tooltip::new().trigger(Trigger::Axis))
        .grid(Grid::new().left(CHART_LEFT as f64).right(CHART_RIGHT as f64).top(10).bottom(24))
        .x_axis(Axis::new().type_(AxisType::Category).data(labels).axis_label(AxisLabel::new().font_size(10)))
        .y_axis(Axis::new().type_(AxisType::Value).min_interval(1).axis_label(AxisLabel::new().font_size(10)))
        .series(Bar::new().data(counts).bar_width("90%").item_style(ItemStyle::new().color(Color::from("#2966b8"))));
    let updated = handle.with_value(|e| match e {
        Some(e) => {
            charming::WasmRenderer::update(e, &chart);
            true
        }
        None => false,
    });
    if !updated && let Ok(e) = charming::WasmRenderer::new(width, 140).render("histogram-chart", &chart) {
        handle.set_value(Some(e));
    }
}

#[cfg(not(feature = "hydrate"))]
pub(super) fn draw_histogram(_: &Histogram, _: ChartStore) {}
