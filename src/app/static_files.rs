//! `--static DIR`: files served at the root path when no route matches, like express.static.
//!
//! No way out of DIR: `..` segments (also percent-encoded) are refused before touching the
//! file system, and the resolved path (symlinks followed) must still lie under DIR. Anything
//! refused is a plain 404, so a probe learns nothing about what exists outside.

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use super::Reply;
use crate::proto::http1::{Method, Request, Response};

#[derive(Debug)]
pub struct StaticDir {
    /// Canonical (absolute, symlink-free) root.
    root: PathBuf,
}

impl StaticDir {
    pub fn new(dir: &Path) -> io::Result<StaticDir> {
        let root = dir.canonicalize()?;
        if !root.is_dir() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("{} is not a folder", dir.display())));
        }
        Ok(StaticDir { root })
    }

    /// The file for a URL path, or `None` when it must be a 404.
    pub fn resolve(&self, url_path: &str) -> Option<(PathBuf, std::fs::Metadata)> {
        let decoded: Vec<u8> = percent_encoding::percent_decode_str(url_path).collect();
        if decoded.contains(&0) || decoded.contains(&b'\\') {
            return None;
        }
        let mut path = self.root.clone();
        for seg in decoded.split(|&b| b == b'/') {
            match seg {
                b"" | b"." => {}
                b".." => return None,
                s => path.push(OsStr::from_bytes(s)),
            }
        }
        let mut real = path.canonicalize().ok()?;
        if !real.starts_with(&self.root) {
            return None;
        }
        let mut meta = real.metadata().ok()?;
        if meta.is_dir() {
            real = real.join("index.html").canonicalize().ok()?;
            if !real.starts_with(&self.root) {
                return None;
            }
            meta = real.metadata().ok()?;
        }
        meta.is_file().then_some((real, meta))
    }

    /// Serves `req` from the folder: 200 with the file, 304 when the client's copy is
    /// current, `None` for a 404.
    pub fn serve(&self, req: &Request) -> Option<Reply> {
        let (path, meta) = self.resolve(req.head.path())?;
        let len = meta.len();
        let mtime = meta.modified().ok().unwrap_or(UNIX_EPOCH);
        let mtime_secs = mtime.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        // nginx's ETag: hex mtime and length; cheap, and changes whenever the file does.
        let etag = format!("\"{mtime_secs:x}-{len:x}\"");
        let last_modified = httpdate::fmt_http_date(mtime);

        // RFC 9110 §13.2.2: If-None-Match takes precedence over If-Modified-Since.
        let not_modified = match req.head.header_str("if-none-match") {
            Some(inm) => inm.split(',').map(str::trim).any(|t| t == "*" || t.trim_start_matches("W/") == etag),
            None => req
                .head
                .header_str("if-modified-since")
                .and_then(|v| httpdate::parse_http_date(v).ok())
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .is_some_and(|ims| mtime_secs <= ims.as_secs()),
        };
        let base = |status| {
            Response::empty(status)
                .header("ETag", etag.clone())
                .header("Last-Modified", last_modified.clone())
                .header("Cache-Control", "no-cache")
        };
        if not_modified {
            return Some(Reply::Response(base(304)));
        }
        let head = base(200).header("Content-Type", content_type(&path));
        let file = if req.head.method == Method::Head { None } else { Some(File::open(&path).ok()?) };
        Some(Reply::File { head, file, len })
    }
}

fn content_type(path: &Path) -> String {
    let mime = mime_guess::from_path(path).first_or_octet_stream();
    // Browsers guess the charset of text without one; our pages and scripts are UTF-8.
    if mime.type_() == mime_guess::mime::TEXT || mime.subtype() == "javascript" || mime.subtype() == "json" {
        format!("{mime}; charset=utf-8")
    } else {
        mime.to_string()
    }
}
