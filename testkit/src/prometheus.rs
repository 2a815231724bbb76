//! A small parser for the Prometheus text exposition format (0.0.4), so tests assert on samples
//! and types instead of searching the text.

use std::collections::{BTreeMap, HashMap};

/// One sample: metric name, labels, value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// A parsed exposition.
#[derive(Debug, Default)]
pub struct Exposition {
    /// `# TYPE` of each metric family.
    pub types: HashMap<String, String>,
    pub samples: Vec<Sample>,
}

impl Exposition {
    /// Parses `text`; panics with the offending line on a syntax error.
    pub fn parse(text: &str) -> Self {
        let mut out = Self::default();
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("TYPE line has a kind");
                let previous = out.types.insert(name.to_owned(), kind.to_owned());
                assert!(previous.is_none(), "metric family {name} declared twice");
                continue;
            }
            if line.starts_with('#') {
                continue;
            }
            out.samples.push(parse_sample(line));
        }
        out
    }

    /// The samples of `name` whose labels include every pair of `labels`.
    pub fn find(&self, name: &str, labels: &[(&str, &str)]) -> Vec<&Sample> {
        self.samples
            .iter()
            .filter(|s| {
                s.name == name
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .collect()
    }

    /// The value of the one sample of `name` matching `labels`; panics when there is not
    /// exactly one.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let found = self.find(name, labels);
        assert_eq!(
            found.len(),
            1,
            "expected one sample {name}{labels:?}, found {found:#?}"
        );
        found[0].value
    }
}

fn parse_sample(line: &str) -> Sample {
    let name_end = line
        .find(['{', ' '])
        .unwrap_or_else(|| panic!("sample without a value: {line}"));
    let name = &line[..name_end];
    let bytes = line.as_bytes();
    let mut i = name_end;
    let mut labels = BTreeMap::new();
    if bytes[i] == b'{' {
        i += 1;
        loop {
            match bytes.get(i) {
                Some(b'}') => {
                    i += 1;
                    break;
                }
                Some(b',') => i += 1,
                Some(_) => {
                    let eq = line[i..]
                        .find('=')
                        .unwrap_or_else(|| panic!("label without = in {line}"))
                        + i;
                    let key = line[i..eq].to_owned();
                    assert_eq!(bytes.get(eq + 1), Some(&b'"'), "quoted label value: {line}");
                    i = eq + 2;
                    let mut value = String::new();
                    loop {
                        match bytes.get(i) {
                            Some(b'\\') => {
                                value.push(match bytes.get(i + 1) {
                                    Some(b'n') => '\n',
                                    Some(b'"') => '"',
                                    Some(b'\\') => '\\',
                                    other => panic!("bad escape {other:?} in {line}"),
                                });
                                i += 2;
                            }
                            Some(b'"') => {
                                i += 1;
                                break;
                            }
                            Some(_) => {
                                let ch = line[i..].chars().next().expect("a char");
                                value.push(ch);
                                i += ch.len_utf8();
                            }
                            None => panic!("unterminated label value: {line}"),
                        }
                    }
                    let previous = labels.insert(key, value);
                    assert!(previous.is_none(), "repeated label in {line}");
                }
                None => panic!("unterminated label set: {line}"),
            }
        }
    }
    let mut parts = line[i..].split_whitespace();
    let value = parts.next().unwrap_or_else(|| panic!("no value: {line}"));
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        v => v
            .parse()
            .unwrap_or_else(|_| panic!("bad value {v} in {line}")),
    };
    Sample {
        name: name.to_owned(),
        labels,
        value,
    }
}
