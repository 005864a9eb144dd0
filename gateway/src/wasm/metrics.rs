//! Plugin metrics: what `proxy_define_metric` and friends create, exported on the gateway's
//! `/metrics` next to its own.
//!
//! # From a flat Proxy-Wasm name to Prometheus (the one mapping)
//!
//! A filter defines a metric by a flat name: a base name, then optional label segments,
//! all separated by `;` — `requests;route=chat;outcome=allowed`. It becomes:
//!
//! - the family `aistack_plugin_<base>`, where every character of `<base>` outside
//!   `[a-zA-Z0-9_]` is replaced by `_`; counters get `_total` appended unless the base
//!   already ends with it;
//! - labels: `plugin` (the plugin's name under `plugins:`), then each `label=value`
//!   segment (label names sanitized as the base; values kept as given). Segment order
//!   does not matter.
//!
//! So `requests;route=chat` (a counter) of plugin `quota` is exported as
//! `aistack_plugin_requests_total{plugin="quota",route="chat"}`.
//!
//! Histograms record plain numbers (not seconds) into the buckets 1, 4, 16, … 4^10.
//!
//! # Limits, and what the SDK sees
//!
//! The Rust SDK panics on any status of `proxy_define_metric` but `Ok`, so a definition
//! the host will not export still answers `Ok` with a *dropped* id: updates through it
//! are accepted and go nowhere. That happens past [`MAX_SERIES_PER_PLUGIN`] series of one
//! plugin, for a malformed name (empty base, a segment without `=`, a label named
//! `plugin`), and when the family already exists with another type or label set. Each is
//! logged and counted in `aistack_plugin_metrics_dropped_total{plugin}`.
//!
//! A (plugin, type, name) is one series for the life of the process: every VM of the
//! plugin, on every thread and after every restart or reload, gets the same id and adds to
//! the same series. Ids are process-wide, and a plugin cannot touch another's.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};

/// Distinct series one plugin may define; later definitions are dropped.
pub const MAX_SERIES_PER_PLUGIN: usize = 1_000;

/// `proxy_metric_type_t`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum MetricType {
    Counter,
    Gauge,
    Histogram,
}

impl MetricType {
    pub(crate) fn from_abi(value: u32) -> Option<Self> {
        match value {
            0 => Some(MetricType::Counter),
            1 => Some(MetricType::Gauge),
            2 => Some(MetricType::Histogram),
            _ => None,
        }
    }
}

/// Why an update was refused (the ABI statuses the SDK accepts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MetricError {
    NotFound,
    BadArgument,
}

#[derive(Clone)]
enum Series {
    Counter(IntCounter),
    Gauge(IntGauge),
    Histogram(Histogram),
    Dropped,
}

#[derive(Clone)]
enum Family {
    Counter(IntCounterVec),
    Gauge(IntGaugeVec),
    Histogram(HistogramVec),
}

/// A flat name parsed: family name and (label, value) pairs, sorted by label.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Mapped {
    pub(crate) family: String,
    pub(crate) labels: Vec<(String, String)>,
}

fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The mapping of the module docs; `Err` says why the name is refused.
pub(crate) fn map_name(kind: MetricType, flat: &str) -> Result<Mapped, String> {
    let mut segments = flat.split(';');
    let base = sanitize(segments.next().unwrap_or_default().trim());
    if base.is_empty() {
        return Err("the metric name is empty".into());
    }
    let mut family = format!("aistack_plugin_{base}");
    if kind == MetricType::Counter && !family.ends_with("_total") {
        family.push_str("_total");
    }
    let mut labels: Vec<(String, String)> = Vec::new();
    for segment in segments.filter(|s| !s.is_empty()) {
        let Some((label, value)) = segment.split_once('=') else {
            return Err(format!("segment `{segment}` is not `label=value`"));
        };
        let mut label = sanitize(label.trim());
        if label.is_empty() || label == "plugin" || label.starts_with("__") {
            return Err(format!("label `{label}` is empty or reserved"));
        }
        if label.starts_with(|c: char| c.is_ascii_digit()) {
            label.insert(0, '_');
        }
        if labels.iter().any(|(l, _)| *l == label) {
            return Err(format!("label `{label}` appears twice"));
        }
        labels.push((label, value.to_owned()));
    }
    labels.sort();
    Ok(Mapped { family, labels })
}

#[derive(Default)]
struct Tables {
    /// Index = id − 1.
    series: Vec<(Arc<str>, MetricType, Series)>,
    by_name: HashMap<(Arc<str>, MetricType, String), u32>,
    /// Real (not dropped) series per plugin.
    per_plugin: HashMap<Arc<str>, usize>,
    /// Family name → (family, its label names).
    families: HashMap<String, (Family, Vec<String>)>,
}

/// Every plugin metric of the process (one per [`WasmRuntime`](super::WasmRuntime)).
pub(crate) struct PluginMetrics {
    registry: Option<Registry>,
    dropped: IntCounterVec,
    tables: RwLock<Tables>,
    /// Serializes definitions (rare) so that a family is registered once.
    defining: Mutex<()>,
}

impl std::fmt::Debug for PluginMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginMetrics").finish_non_exhaustive()
    }
}

fn buckets() -> Vec<f64> {
    (0..=10).map(|i| 4f64.powi(i)).collect()
}

impl PluginMetrics {
    /// Families are registered into `registry` (the gateway's) as plugins define them;
    /// without one they are kept but exported nowhere (`aistack validate`, tests).
    pub(crate) fn new(registry: Option<Registry>) -> Self {
        let dropped = IntCounterVec::new(
            Opts::new(
                "aistack_plugin_metrics_dropped_total",
                "Plugin metric definitions not exported (cardinality cap, bad name, conflict)",
            ),
            &["plugin"],
        )
        .expect("static metric definition");
        if let Some(registry) = &registry
            && let Err(e) = registry.register(Box::new(dropped.clone()))
        {
            tracing::warn!("cannot register the plugin metrics counter: {e}");
        }
        PluginMetrics {
            registry,
            dropped,
            tables: RwLock::new(Tables::default()),
            defining: Mutex::new(()),
        }
    }

    /// `proxy_define_metric`: the id of the series, defining it on first use.
    pub(crate) fn define(&self, plugin: &Arc<str>, kind: MetricType, flat: &str) -> u32 {
        let _defining = self.defining.lock().unwrap_or_else(|e| e.into_inner());
        let key = (Arc::clone(plugin), kind, flat.to_owned());
        if let Some(&id) = self.read().by_name.get(&key) {
            return id;
        }
        let series = self.create(plugin, kind, flat).unwrap_or_else(|why| {
            tracing::warn!(
                plugin = &**plugin,
                metric = flat,
                "plugin metric dropped: {why}"
            );
            self.dropped.with_label_values(&[&**plugin]).inc();
            Series::Dropped
        });
        let mut tables = self.tables.write().unwrap_or_else(|e| e.into_inner());
        if !matches!(series, Series::Dropped) {
            *tables.per_plugin.entry(Arc::clone(plugin)).or_default() += 1;
        }
        tables.series.push((Arc::clone(plugin), kind, series));
        let id = u32::try_from(tables.series.len()).unwrap_or(u32::MAX);
        tables.by_name.insert(key, id);
        id
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Tables> {
        self.tables.read().unwrap_or_else(|e| e.into_inner())
    }

    fn create(&self, plugin: &Arc<str>, kind: MetricType, flat: &str) -> Result<Series, String> {
        if self.read().per_plugin.get(plugin).copied().unwrap_or(0) >= MAX_SERIES_PER_PLUGIN {
            return Err(format!(
                "the plugin has {MAX_SERIES_PER_PLUGIN} series (the cap)"
            ));
        }
        let mapped = map_name(kind, flat)?;
        let mut names: Vec<String> = vec!["plugin".into()];
        names.extend(mapped.labels.iter().map(|(l, _)| l.clone()));
        let family = self.family(kind, &mapped.family, &names)?;
        let mut values: Vec<&str> = vec![&**plugin];
        values.extend(mapped.labels.iter().map(|(_, v)| v.as_str()));
        let bad = |e: prometheus::Error| e.to_string();
        Ok(match family {
            Family::Counter(f) => {
                Series::Counter(f.get_metric_with_label_values(&values).map_err(bad)?)
            }
            Family::Gauge(f) => {
                Series::Gauge(f.get_metric_with_label_values(&values).map_err(bad)?)
            }
            Family::Histogram(f) => {
                Series::Histogram(f.get_metric_with_label_values(&values).map_err(bad)?)
            }
        })
    }

    /// The family `name`, created and registered on first use.
    fn family(&self, kind: MetricType, name: &str, labels: &[String]) -> Result<Family, String> {
        if let Some((family, known)) = self.read().families.get(name) {
            let same_kind = matches!(
                (family, kind),
                (Family::Counter(_), MetricType::Counter)
                    | (Family::Gauge(_), MetricType::Gauge)
                    | (Family::Histogram(_), MetricType::Histogram)
            );
            if !same_kind || known != labels {
                return Err(format!("`{name}` exists with another type or label set"));
            }
            return Ok(family.clone());
        }
        let help = "Defined by a Proxy-Wasm plugin";
        let label_refs: Vec<&str> = labels.iter().map(String::as_str).collect();
        let bad = |e: prometheus::Error| e.to_string();
        let family = match kind {
            MetricType::Counter => Family::Counter(
                IntCounterVec::new(Opts::new(name, help), &label_refs).map_err(bad)?,
            ),
            MetricType::Gauge => {
                Family::Gauge(IntGaugeVec::new(Opts::new(name, help), &label_refs).map_err(bad)?)
            }
            MetricType::Histogram => Family::Histogram(
                HistogramVec::new(
                    HistogramOpts::new(name, help).buckets(buckets()),
                    &label_refs,
                )
                .map_err(bad)?,
            ),
        };
        if let Some(registry) = &self.registry {
            let collector: Box<dyn prometheus::core::Collector> = match &family {
                Family::Counter(f) => Box::new(f.clone()),
                Family::Gauge(f) => Box::new(f.clone()),
                Family::Histogram(f) => Box::new(f.clone()),
            };
            registry.register(collector).map_err(bad)?;
        }
        let mut tables = self.tables.write().unwrap_or_else(|e| e.into_inner());
        tables
            .families
            .insert(name.to_owned(), (family.clone(), labels.to_vec()));
        Ok(family)
    }

    fn with_series<R>(
        &self,
        plugin: &str,
        id: u32,
        f: impl FnOnce(&Series) -> Result<R, MetricError>,
    ) -> Result<R, MetricError> {
        let tables = self.read();
        let index = (id as usize).checked_sub(1).ok_or(MetricError::NotFound)?;
        match tables.series.get(index) {
            Some((owner, _, series)) if &**owner == plugin => f(series),
            _ => Err(MetricError::NotFound),
        }
    }

    /// `proxy_increment_metric`: counters take non-negative offsets, gauges any.
    pub(crate) fn increment(&self, plugin: &str, id: u32, offset: i64) -> Result<(), MetricError> {
        self.with_series(plugin, id, |series| match series {
            Series::Counter(c) => {
                let offset = u64::try_from(offset).map_err(|_| MetricError::BadArgument)?;
                c.inc_by(offset);
                Ok(())
            }
            Series::Gauge(g) => {
                g.add(offset);
                Ok(())
            }
            Series::Histogram(_) => Err(MetricError::BadArgument),
            Series::Dropped => Ok(()),
        })
    }

    /// `proxy_record_metric`: adds to a counter, sets a gauge, observes a histogram
    /// (Envoy's semantics).
    pub(crate) fn record(&self, plugin: &str, id: u32, value: u64) -> Result<(), MetricError> {
        self.with_series(plugin, id, |series| {
            match series {
                Series::Counter(c) => c.inc_by(value),
                Series::Gauge(g) => g.set(i64::try_from(value).unwrap_or(i64::MAX)),
                Series::Histogram(h) => h.observe(value as f64),
                Series::Dropped => {}
            }
            Ok(())
        })
    }

    /// `proxy_get_metric`: a counter's or gauge's value (a negative gauge reads as 0).
    pub(crate) fn get(&self, plugin: &str, id: u32) -> Result<u64, MetricError> {
        self.with_series(plugin, id, |series| match series {
            Series::Counter(c) => Ok(c.get()),
            Series::Gauge(g) => Ok(u64::try_from(g.get()).unwrap_or(0)),
            Series::Histogram(_) => Err(MetricError::BadArgument),
            Series::Dropped => Ok(0),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_names_map_to_families_and_labels() {
        let m = map_name(MetricType::Counter, "requests;route=chat;outcome=ok").expect("valid");
        assert_eq!(m.family, "aistack_plugin_requests_total");
        assert_eq!(
            m.labels,
            [
                ("outcome".into(), "ok".into()),
                ("route".into(), "chat".into())
            ]
        );
        let m = map_name(MetricType::Gauge, "in-flight.requests").expect("valid");
        assert_eq!(m.family, "aistack_plugin_in_flight_requests");
        let m = map_name(MetricType::Counter, "hits_total").expect("valid");
        assert_eq!(m.family, "aistack_plugin_hits_total");
        assert!(map_name(MetricType::Counter, "").is_err());
        assert!(map_name(MetricType::Counter, "x;novalue").is_err());
        assert!(map_name(MetricType::Counter, "x;plugin=a").is_err());
        assert!(map_name(MetricType::Counter, "x;a=1;a=2").is_err());
    }

    #[test]
    fn series_are_shared_capped_and_private_to_their_plugin() {
        let registry = Registry::new();
        let metrics = PluginMetrics::new(Some(registry.clone()));
        let (a, b): (Arc<str>, Arc<str>) = (Arc::from("a"), Arc::from("b"));
        let id = metrics.define(&a, MetricType::Counter, "hits;route=r");
        assert_eq!(metrics.define(&a, MetricType::Counter, "hits;route=r"), id);
        assert_eq!(metrics.increment("a", id, 2), Ok(()));
        assert_eq!(metrics.record("a", id, 3), Ok(()));
        assert_eq!(metrics.get("a", id), Ok(5));
        assert_eq!(
            metrics.increment("a", id, -1),
            Err(MetricError::BadArgument)
        );
        assert_eq!(metrics.get("b", id), Err(MetricError::NotFound));
        assert_eq!(metrics.get("a", 0), Err(MetricError::NotFound));
        let g = metrics.define(&b, MetricType::Gauge, "depth");
        assert_eq!(metrics.increment("b", g, -4), Ok(()));
        assert_eq!(metrics.get("b", g), Ok(0));
        let h = metrics.define(&b, MetricType::Histogram, "size");
        assert_eq!(metrics.record("b", h, 100), Ok(()));
        assert_eq!(metrics.get("b", h), Err(MetricError::BadArgument));
        // A conflicting family is dropped, yet answers like a series.
        let clash = metrics.define(&b, MetricType::Gauge, "hits;route=r");
        assert_eq!(metrics.increment("b", clash, 1), Ok(()));
        for i in 0..MAX_SERIES_PER_PLUGIN + 5 {
            metrics.define(&b, MetricType::Counter, &format!("many;i={i}"));
        }
        let text = prometheus::TextEncoder::new()
            .encode_to_string(&registry.gather())
            .expect("text");
        assert!(
            text.contains("aistack_plugin_hits_total{plugin=\"a\",route=\"r\"} 5"),
            "{text}"
        );
        assert!(
            text.contains("aistack_plugin_depth{plugin=\"b\"} -4"),
            "{text}"
        );
        assert!(
            text.contains("aistack_plugin_size_count{plugin=\"b\"} 1"),
            "{text}"
        );
        // b has depth, size and 998 of `many`: 8 definitions dropped, plus the clash.
        assert!(
            text.contains("aistack_plugin_metrics_dropped_total{plugin=\"b\"} 8"),
            "{text}"
        );
    }
}
