//! Service locators, as in RAMCloud: `tcp:host=10.0.0.1,port=12247`, `udp:host=..,port=..`,
//! `loopback:name=N`, `dpdk:...`, `infrc:host=..,port=..`. A [`ServiceLocator`] is a list of
//! `;`-separated alternatives in order of preference. `Display` round-trips through `FromStr`.
//!
//! Grammar: `locator := alt (';' alt)*`, `alt := kind ':' [opt (',' opt)*]`,
//! `opt := key '=' value`; keys are `[a-z0-9_]+`, values are non-empty and contain none of `,;=`.

use std::fmt;
use std::str::FromStr;

/// Which transport a locator names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransportKind {
    /// Kernel TCP (`tcp:host=H,port=P`).
    Tcp,
    /// Reliable datagram protocol over kernel UDP (`udp:host=H,port=P`).
    Udp,
    /// In-process transport (`loopback:name=N`).
    Loopback,
    /// DPDK kernel-bypass Ethernet (parsed only; the driver comes with a later issue).
    Dpdk,
    /// InfiniBand verbs (parsed only; the driver comes with a later issue).
    Infrc,
}

impl TransportKind {
    /// The locator prefix.
    pub const fn as_str(self) -> &'static str {
        match self {
            TransportKind::Tcp => "tcp",
            TransportKind::Udp => "udp",
            TransportKind::Loopback => "loopback",
            TransportKind::Dpdk => "dpdk",
            TransportKind::Infrc => "infrc",
        }
    }

    fn from_prefix(s: &str) -> Option<Self> {
        Some(match s {
            "tcp" => TransportKind::Tcp,
            "udp" => TransportKind::Udp,
            "loopback" => TransportKind::Loopback,
            "dpdk" => TransportKind::Dpdk,
            "infrc" => TransportKind::Infrc,
            _ => return None,
        })
    }

    /// Options a locator of this kind must have.
    fn required(self) -> &'static [&'static str] {
        match self {
            TransportKind::Tcp | TransportKind::Udp | TransportKind::Infrc => &["host", "port"],
            TransportKind::Loopback => &["name"],
            TransportKind::Dpdk => &[],
        }
    }
}

impl fmt::Display for TransportKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A locator string that could not be parsed; `part` quotes the offending piece.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad service locator {part:?}: {reason}")]
pub struct LocatorError {
    /// The offending part of the input.
    pub part: String,
    /// What rule it broke and how to fix it.
    pub reason: String,
}

fn err(part: &str, reason: impl Into<String>) -> LocatorError {
    LocatorError {
        part: part.to_string(),
        reason: reason.into(),
    }
}

/// One alternative: a transport kind and its options, in the order written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Locator {
    kind: TransportKind,
    options: Vec<(String, String)>,
}

impl Locator {
    /// Build a locator from parts (validated like a parsed one).
    pub fn new(kind: TransportKind, options: &[(&str, &str)]) -> Result<Locator, LocatorError> {
        let s = Locator {
            kind,
            options: options
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
        .to_string();
        s.parse()
    }

    /// `tcp:host=H,port=P`.
    pub fn tcp(host: &str, port: u16) -> Locator {
        Locator {
            kind: TransportKind::Tcp,
            options: vec![
                ("host".into(), host.into()),
                ("port".into(), port.to_string()),
            ],
        }
    }

    /// `udp:host=H,port=P`.
    pub fn udp(host: &str, port: u16) -> Locator {
        Locator {
            kind: TransportKind::Udp,
            options: vec![
                ("host".into(), host.into()),
                ("port".into(), port.to_string()),
            ],
        }
    }

    /// `loopback:name=N`.
    pub fn loopback(name: &str) -> Locator {
        Locator {
            kind: TransportKind::Loopback,
            options: vec![("name".into(), name.into())],
        }
    }

    /// The transport kind.
    pub fn kind(&self) -> TransportKind {
        self.kind
    }

    /// All options in written order.
    pub fn options(&self) -> &[(String, String)] {
        &self.options
    }

    /// The value of option `key`, if present.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.options
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// `host` option.
    pub fn host(&self) -> Option<&str> {
        self.get("host")
    }

    /// `port` option, parsed (validated at parse time for tcp/udp/infrc).
    pub fn port(&self) -> Option<u16> {
        self.get("port").and_then(|p| p.parse().ok())
    }

    /// Replace or add option `key`.
    pub fn with(mut self, key: &str, value: &str) -> Locator {
        match self.options.iter_mut().find(|(k, _)| k == key) {
            Some(kv) => kv.1 = value.to_string(),
            None => self.options.push((key.to_string(), value.to_string())),
        }
        self
    }

    /// An optional numeric option, with a typed error quoting it.
    pub fn get_parsed<T: FromStr>(&self, key: &str) -> Result<Option<T>, LocatorError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .parse()
                .map(Some)
                .map_err(|_| err(&format!("{key}={v}"), format!("{key} must be a number"))),
        }
    }
}

impl fmt::Display for Locator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:", self.kind)?;
        for (i, (k, v)) in self.options.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{k}={v}")?;
        }
        Ok(())
    }
}

impl FromStr for Locator {
    type Err = LocatorError;
    fn from_str(s: &str) -> Result<Locator, LocatorError> {
        let t = s.trim();
        let Some((prefix, rest)) = t.split_once(':') else {
            return Err(err(
                t,
                "expected `kind:key=value,...` (e.g. `tcp:host=127.0.0.1,port=12247`)",
            ));
        };
        let kind = TransportKind::from_prefix(prefix).ok_or_else(|| {
            err(
                prefix,
                "unknown transport kind: use tcp, udp, loopback, dpdk or infrc",
            )
        })?;
        let mut options: Vec<(String, String)> = Vec::new();
        if !rest.is_empty() {
            for opt in rest.split(',') {
                let Some((k, v)) = opt.split_once('=') else {
                    return Err(err(opt, "option must be `key=value`"));
                };
                if k.is_empty()
                    || !k
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
                {
                    return Err(err(
                        opt,
                        "option key must be lower-case letters, digits or `_`",
                    ));
                }
                if v.is_empty() || v.contains('=') {
                    return Err(err(
                        opt,
                        "option value must be non-empty and contain no `=`",
                    ));
                }
                if options.iter().any(|(k2, _)| k2 == k) {
                    return Err(err(opt, "option given twice"));
                }
                options.push((k.to_string(), v.to_string()));
            }
        }
        for req in kind.required() {
            if !options.iter().any(|(k, _)| k == req) {
                return Err(err(t, format!("`{kind}` locator needs a `{req}=` option")));
            }
        }
        if let Some((_, p)) = options.iter().find(|(k, _)| k == "port") {
            if p.parse::<u16>().is_err() {
                return Err(err(&format!("port={p}"), "port must be a number 0..=65535"));
            }
        }
        Ok(Locator { kind, options })
    }
}

/// A list of alternatives in order of preference (`a;b;c`). Never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceLocator {
    alternatives: Vec<Locator>,
}

impl ServiceLocator {
    /// The alternatives, most preferred first.
    pub fn alternatives(&self) -> &[Locator] {
        &self.alternatives
    }
    /// The most preferred alternative.
    pub fn first(&self) -> &Locator {
        &self.alternatives[0]
    }
}

impl From<Locator> for ServiceLocator {
    fn from(l: Locator) -> Self {
        ServiceLocator {
            alternatives: vec![l],
        }
    }
}

impl FromStr for ServiceLocator {
    type Err = LocatorError;
    fn from_str(s: &str) -> Result<ServiceLocator, LocatorError> {
        if s.trim().is_empty() {
            return Err(err(s, "empty service locator"));
        }
        let alternatives = s
            .split(';')
            .map(|a| a.parse::<Locator>())
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ServiceLocator { alternatives })
    }
}

impl fmt::Display for ServiceLocator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, l) in self.alternatives.iter().enumerate() {
            if i > 0 {
                f.write_str(";")?;
            }
            write!(f, "{l}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_round_trips() {
        for s in [
            "tcp:host=10.0.0.1,port=12247",
            "udp:host=127.0.0.1,port=0,mtu=9000",
            "loopback:name=a",
            "dpdk:",
            "dpdk:port=0,mac=00:11:22:33:44:55",
            "infrc:host=node1,port=12246",
            "infrc:host=node1,port=12246;tcp:host=node1,port=12247",
        ] {
            let l: ServiceLocator = s.parse().unwrap();
            assert_eq!(l.to_string(), s);
        }
        let l: ServiceLocator = "infrc:host=a,port=1;tcp:host=a,port=2".parse().unwrap();
        assert_eq!(l.alternatives().len(), 2);
        assert_eq!(l.first().kind(), TransportKind::Infrc);
        assert_eq!(l.alternatives()[1].port(), Some(2));
    }

    #[test]
    fn errors_quote_the_bad_part() {
        let e = "tcp:host=a,port=99999"
            .parse::<ServiceLocator>()
            .unwrap_err();
        assert_eq!(e.part, "port=99999");
        let e = "tcp:host=a,port=1;quic:host=b"
            .parse::<ServiceLocator>()
            .unwrap_err();
        assert_eq!(e.part, "quic");
        let e = "tcp:host=a".parse::<ServiceLocator>().unwrap_err();
        assert!(e.reason.contains("port"), "{e}");
        let e = "tcp:host=a,portx".parse::<ServiceLocator>().unwrap_err();
        assert_eq!(e.part, "portx");
        let e = "tcp:host=a,host=b,port=1"
            .parse::<ServiceLocator>()
            .unwrap_err();
        assert_eq!(e.part, "host=b");
        assert!("".parse::<ServiceLocator>().is_err());
        assert!("nocolon".parse::<ServiceLocator>().is_err());
        assert!(e.to_string().contains("host=b"));
    }

    #[test]
    fn builders() {
        assert_eq!(
            Locator::tcp("127.0.0.1", 5).to_string(),
            "tcp:host=127.0.0.1,port=5"
        );
        assert_eq!(Locator::loopback("x").to_string(), "loopback:name=x");
        assert_eq!(
            Locator::udp("h", 1)
                .with("mtu", "9000")
                .get_parsed::<usize>("mtu"),
            Ok(Some(9000))
        );
        assert!(Locator::new(TransportKind::Tcp, &[("host", "a")]).is_err());
    }
}
