//! The metric selectors of PromQL expressions (dashboard queries), so a test can check that
//! every series a panel reads exists. Not a PromQL parser: it knows the shapes dashboards use
//! (functions, aggregations with `by`/`without`, selectors with matchers, ranges, numbers,
//! Grafana `$variables`), which is enough to find each metric name and its `=` matchers.

/// One metric selector: `name{label="value", ...}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selector {
    /// The metric name.
    pub metric: String,
    /// The equality matchers (`label="value"`); regex and negative matchers are left out,
    /// since Grafana variables stand in their values.
    pub equal: Vec<(String, String)>,
}

const KEYWORDS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "bool",
    "offset",
];

/// Every metric selector in `expr`. A Grafana `label_values(metric, label)` query yields its
/// metric.
pub fn selectors(expr: &str) -> Vec<Selector> {
    if let Some(args) = expr
        .trim()
        .strip_prefix("label_values(")
        .and_then(|rest| rest.strip_suffix(')'))
    {
        let metric = args.split(',').next().unwrap_or_default().trim();
        return vec![Selector {
            metric: metric.to_owned(),
            equal: Vec::new(),
        }];
    }
    let chars: Vec<char> = expr.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    // Inside `by (...)` / `without (...)`: identifiers there are labels.
    let mut in_grouping = false;
    let mut after_grouping_keyword = false;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '"' | '\'' => i = skip_string(&chars, i),
            '[' => i = skip_past(&chars, i, ']'),
            '(' => {
                in_grouping = after_grouping_keyword;
                after_grouping_keyword = false;
                i += 1;
            }
            ')' => {
                in_grouping = false;
                i += 1;
            }
            '$' | '0'..='9' | '.' => {
                i += 1;
                while i < chars.len() && is_ident(chars[i]) {
                    i += 1;
                }
            }
            c if is_ident_start(c) => {
                let start = i;
                while i < chars.len() && is_ident(chars[i]) {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                let next = chars[i..].iter().find(|c| !c.is_whitespace()).copied();
                let rest: String = chars[i..].iter().collect();
                let rest = rest.trim_start();
                let grouped_next = ["by", "without"].iter().any(|k| {
                    rest.strip_prefix(k)
                        .is_some_and(|r| r.trim_start().starts_with('('))
                });
                if KEYWORDS.contains(&word.as_str()) {
                    after_grouping_keyword = word == "by" || word == "without";
                } else if in_grouping || next == Some('(') || grouped_next {
                    // A grouping label, or a function / aggregation (`sum by (…) (…)`).
                } else {
                    let mut selector = Selector {
                        metric: word,
                        equal: Vec::new(),
                    };
                    if next == Some('{') {
                        let open = i + chars[i..].iter().position(|&c| c == '{').unwrap_or(0);
                        let close = skip_past(&chars, open, '}');
                        let body: String =
                            chars[open + 1..close.saturating_sub(1)].iter().collect();
                        selector.equal = equal_matchers(&body);
                        i = close;
                    }
                    out.push(selector);
                }
            }
            _ => i += 1,
        }
    }
    out
}

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':'
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

/// The index after the string starting at `i` (its quote), honouring backslash escapes.
fn skip_string(chars: &[char], i: usize) -> usize {
    let quote = chars[i];
    let mut j = i + 1;
    while j < chars.len() && chars[j] != quote {
        j += if chars[j] == '\\' { 2 } else { 1 };
    }
    j + 1
}

/// The index after the first `close` at or after `i`, skipping strings.
fn skip_past(chars: &[char], i: usize, close: char) -> usize {
    let mut j = i + 1;
    while j < chars.len() && chars[j] != close {
        j = if chars[j] == '"' {
            skip_string(chars, j)
        } else {
            j + 1
        };
    }
    j + 1
}

/// `label="value"` pairs of a matcher list; other operators are skipped.
fn equal_matchers(body: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = body;
    while let Some(eq) = rest.find(['=', '!']) {
        let label = rest[..eq].trim().trim_start_matches(',').trim().to_owned();
        let op_len = if rest[eq + 1..].starts_with(['~', '=']) {
            2
        } else {
            1
        };
        let is_equal = &rest[eq..eq + op_len] == "=";
        let after = rest[eq + op_len..].trim_start();
        let Some(quote) = after.chars().next().filter(|c| *c == '"' || *c == '\'') else {
            break;
        };
        let end = after[1..].find(quote).map_or(after.len(), |e| e + 1);
        if is_equal {
            out.push((label, after[1..end].to_owned()));
        }
        rest = after.get(end + 1..).unwrap_or_default();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(expr: &str) -> Vec<String> {
        selectors(expr).into_iter().map(|s| s.metric).collect()
    }

    #[test]
    fn finds_metrics_not_functions_labels_or_variables() {
        assert_eq!(
            names(
                "histogram_quantile(0.95, sum by (le, rotator_rotation_type) \
                 (rate(rotator_rotation_duration_seconds_bucket{rotator_rotation_type=~\"$t\"}[$__rate_interval])))"
            ),
            ["rotator_rotation_duration_seconds_bucket"]
        );
        assert_eq!(
            names("max without (instance, pod) (rotator_outbox_depth)"),
            ["rotator_outbox_depth"]
        );
        assert_eq!(
            names("sum(rate(a_total[5m])) / sum(rate(b_total[5m])) * 60"),
            ["a_total", "b_total"]
        );
        assert_eq!(
            names("label_values(rotator_rotations_total, rotator_rotation_type)"),
            ["rotator_rotations_total"]
        );
        assert_eq!(names("sum(increase(x_total[1h]))"), ["x_total"]);
        assert_eq!(
            names("sum by (rotator_outcome) (rate(r_total[5m])) * 60"),
            ["r_total"]
        );
        assert_eq!(names("sum without (pod)(g)"), ["g"]);
    }

    #[test]
    fn keeps_equality_matchers_only() {
        let s =
            selectors("sum(rate(r_total{rotator_outcome=\"failure\",t=~\"$t\", u!=\"x\"}[5m]))");
        assert_eq!(
            s,
            [Selector {
                metric: "r_total".to_owned(),
                equal: vec![("rotator_outcome".to_owned(), "failure".to_owned())],
            }]
        );
    }
}
