//! `--redis redis://[user:password@]HOST:PORT[/db]`.

use std::fmt;

#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl {
    pub host: String,
    pub port: u16,
    pub user: Option<String>,
    pub password: Option<String>,
    pub db: u32,
}

/// The password stays out of logs.
impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "redis://{}{}:{}/{}", self.user.as_deref().map(|u| format!("{u}@")).unwrap_or_default(), self.host, self.port, self.db)
    }
}

impl fmt::Display for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

impl std::str::FromStr for RedisUrl {
    type Err = String;

    fn from_str(s: &str) -> Result<RedisUrl, String> {
        let rest = s.strip_prefix("redis://").ok_or_else(|| format!("{s:?}: expected redis://[user:password@]host:port[/db]"))?;
        let (authority, db) = match rest.split_once('/') {
            Some((a, "")) => (a, 0),
            Some((a, d)) => (a, d.parse().map_err(|_| format!("{s:?}: the database is a number"))?),
            None => (rest, 0),
        };
        let (creds, hostport) = match authority.rsplit_once('@') {
            Some((c, h)) => (Some(c), h),
            None => (None, authority),
        };
        let decode = |p: &str| percent_encoding::percent_decode_str(p).decode_utf8().map(|c| c.into_owned()).map_err(|_| format!("{s:?}: bad percent-encoding"));
        let (user, password) = match creds {
            None => (None, None),
            // `redis://:secret@host` (password only) is the common form.
            Some(c) => match c.split_once(':') {
                Some((u, p)) => ((!u.is_empty()).then(|| decode(u)).transpose()?, Some(decode(p)?)),
                None => (None, Some(decode(c)?)),
            },
        };
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (h, p.parse().map_err(|_| format!("{s:?}: the port is a number"))?),
            _ => (hostport, 6379),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(format!("{s:?}: no host"));
        }
        Ok(RedisUrl { host: host.to_string(), port, user, password, db })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_forms_people_write() {
        let u: RedisUrl = "redis://127.0.0.1:6380".parse().unwrap();
        assert_eq!((u.host.as_str(), u.port, u.user, u.password, u.db), ("127.0.0.1", 6380, None, None, 0));
        let u: RedisUrl = "redis://alice:s%40cret@redis.local:6379/3".parse().unwrap();
        assert_eq!((u.user.as_deref(), u.password.as_deref(), u.db), (Some("alice"), Some("s@cret"), 3));
        let u: RedisUrl = "redis://:pw@h".parse().unwrap();
        assert_eq!((u.user, u.password.as_deref(), u.port), (None, Some("pw"), 6379));
        let u: RedisUrl = "redis://[::1]:7000/".parse().unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 7000));
        assert!(!format!("{u:?}").contains("pw"));
        let with_pw: RedisUrl = "redis://a:topsecret@h:1".parse().unwrap();
        assert!(!with_pw.to_string().contains("topsecret"), "the password is never printed");
        for bad in ["http://h:1", "redis://", "redis://h:port", "redis://h:1/x", "redis://:pw@"] {
            assert!(bad.parse::<RedisUrl>().is_err(), "{bad}");
        }
    }
}
