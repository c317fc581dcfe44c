//! Reading the operator's `/metrics` (OpenMetrics text) in assertions.

/// The sum of the samples of `name` whose labels include every `labels` pair (`&[]`: all
/// samples), e.g. `sum(text, "binauthz_passes_total", &[("result", "standby")])`.
pub fn sum(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
            let matches = metric == name
                && labels
                    .iter()
                    .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")));
            matches.then(|| value.parse::<f64>().ok()).flatten()
        })
        .sum()
}

#[test]
fn sums_the_samples_whose_labels_match() {
    let text = "# TYPE binauthz_passes counter\n\
                binauthz_passes_total{result=\"ok\",binding=\"a\"} 2\n\
                binauthz_passes_total{result=\"standby\",binding=\"a\"} 3\n\
                binauthz_passes_total{result=\"ok\",binding=\"b\"} 4\n\
                binauthz_passes_created{result=\"ok\"} 99\n\
                binauthz_leader 1\n";
    assert_eq!(sum(text, "binauthz_passes_total", &[]), 9.0);
    assert_eq!(sum(text, "binauthz_passes_total", &[("result", "ok")]), 6.0);
    assert_eq!(
        sum(
            text,
            "binauthz_passes_total",
            &[("result", "ok"), ("binding", "b")]
        ),
        4.0
    );
    assert_eq!(sum(text, "binauthz_leader", &[]), 1.0);
    assert_eq!(sum(text, "binauthz_missing", &[]), 0.0);
}
