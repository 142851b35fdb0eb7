//! Method + path-pattern matching. Patterns are `/literal/{param}/...`; a `{param}` matches
//! one non-empty segment, percent-decoded.

use super::{Ctx, Reply};
use crate::proto::http1::{Method, Request};

/// The most segments a route pattern may have; longer paths match no route.
const MAX_DEPTH: usize = 8;

pub type Handler = fn(&mut Ctx<'_>, &Request, &Params) -> Reply;

/// The values of a route's `{param}` segments.
#[derive(Debug, Default)]
pub struct Params(Vec<(&'static str, String)>);

impl Params {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
    }
}

#[derive(Debug)]
enum Segment {
    Lit(&'static str),
    Param(&'static str),
}

struct Route {
    method: Method,
    pattern: Vec<Segment>,
    handler: Handler,
}

pub enum Match {
    Found(Handler, Params),
    /// The path exists with other methods: the `Allow` header value.
    MethodNotAllowed(String),
    NotFound,
}

#[derive(Default)]
pub struct Router {
    routes: Vec<Route>,
}

impl Router {
    pub fn add(&mut self, method: Method, pattern: &'static str, handler: Handler) -> &mut Self {
        assert!(pattern.starts_with('/'), "route patterns start with /: {pattern}");
        assert!(segments(pattern).count() <= MAX_DEPTH, "route too deep: {pattern}");
        let pattern = segments(pattern)
            .map(|s| match s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                Some(name) => Segment::Param(name),
                None => Segment::Lit(s),
            })
            .collect();
        self.routes.push(Route { method, pattern, handler });
        self
    }

    pub fn get(&mut self, pattern: &'static str, handler: Handler) -> &mut Self {
        self.add(Method::Get, pattern, handler)
    }

    pub fn post(&mut self, pattern: &'static str, handler: Handler) -> &mut Self {
        self.add(Method::Post, pattern, handler)
    }

    /// Finds the route for `method` and `path`. HEAD is served by GET routes.
    pub fn lookup(&self, method: Method, path: &str) -> Match {
        // Split once, then compare segment lists: no route is deeper than MAX_DEPTH.
        let mut segs = [""; MAX_DEPTH];
        let mut depth = 0;
        for s in segments(path) {
            if depth == MAX_DEPTH {
                return Match::NotFound;
            }
            segs[depth] = s;
            depth += 1;
        }
        let segs = &segs[..depth];
        let mut allowed: Vec<Method> = Vec::new();
        for route in &self.routes {
            let Some(params) = match_pattern(&route.pattern, segs) else { continue };
            if route.method == method || (method == Method::Head && route.method == Method::Get) {
                return Match::Found(route.handler, params);
            }
            if !allowed.contains(&route.method) {
                allowed.push(route.method);
            }
        }
        if allowed.is_empty() {
            return Match::NotFound;
        }
        if allowed.contains(&Method::Get) && !allowed.contains(&Method::Head) {
            allowed.push(Method::Head);
        }
        allowed.push(Method::Options);
        Match::MethodNotAllowed(allowed.iter().map(|m| m.as_str()).collect::<Vec<_>>().join(", "))
    }
}

fn segments(path: &str) -> impl Iterator<Item = &str> {
    // "/" has no segments; a trailing slash is not a segment either.
    path.split('/').skip(1).filter(|s| !s.is_empty())
}

fn match_pattern(pattern: &[Segment], segs: &[&str]) -> Option<Params> {
    if pattern.len() != segs.len() {
        return None;
    }
    // Literals first, so a mismatch costs no decoding.
    let literals_match = pattern.iter().zip(segs).all(|(p, s)| match p {
        Segment::Lit(lit) => lit == s,
        Segment::Param(_) => true,
    });
    if !literals_match {
        return None;
    }
    let mut params = Params::default();
    for (p, s) in pattern.iter().zip(segs) {
        if let Segment::Param(name) = p {
            // A segment that does not decode to UTF-8 still matches, as an empty value: the
            // handler refuses it with its own error (400), not a misleading 404.
            let v = percent_encoding::percent_decode_str(s).decode_utf8().map(|c| c.into_owned());
            params.0.push((name, v.unwrap_or_default()));
        }
    }
    Some(params)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(_: &mut Ctx<'_>, _: &Request, _: &Params) -> Reply {
        unreachable!()
    }

    #[test]
    fn matching() {
        let mut r = Router::default();
        r.get("/", h).get("/healthz", h).get("/channels/{name}", h).post("/channels/{name}", h);
        assert!(matches!(r.lookup(Method::Get, "/"), Match::Found(..)));
        assert!(matches!(r.lookup(Method::Head, "/healthz"), Match::Found(..)));
        match r.lookup(Method::Get, "/channels/a%20b") {
            Match::Found(_, p) => assert_eq!(p.get("name"), Some("a b")),
            _ => panic!(),
        }
        match r.lookup(Method::Get, "/channels/%FF") {
            Match::Found(_, p) => assert_eq!(p.get("name"), Some("")),
            _ => panic!(),
        }
        assert!(matches!(r.lookup(Method::Get, "/channels"), Match::NotFound));
        assert!(matches!(r.lookup(Method::Get, "/channels/a/b"), Match::NotFound));
        match r.lookup(Method::Post, "/healthz") {
            Match::MethodNotAllowed(allow) => assert_eq!(allow, "GET, HEAD, OPTIONS"),
            _ => panic!(),
        }
        match r.lookup(Method::Delete, "/channels/x") {
            Match::MethodNotAllowed(allow) => assert_eq!(allow, "GET, POST, HEAD, OPTIONS"),
            _ => panic!(),
        }
    }
}
