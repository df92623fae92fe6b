//! Turns a recording `uri` into a path, refusing anything outside the
//! configured recording roots.

use std::path::{Component, Path, PathBuf};

use crate::error::{Error, Result};

/// The directories rkms may write recordings into.
#[derive(Debug, Clone)]
pub struct RecordingRoots {
    roots: Vec<PathBuf>,
}

impl RecordingRoots {
    pub fn new(roots: impl IntoIterator<Item = PathBuf>) -> Self {
        Self {
            roots: roots.into_iter().collect(),
        }
    }

    /// Resolves a `file:///abs/path` URI. Percent escapes are decoded; a `..`
    /// component anywhere, or a path not under one of the roots, is refused.
    /// Symbolic links are resolved for the existing part of the path so a
    /// link inside a root cannot point outside it.
    pub fn resolve(&self, uri: &str) -> Result<PathBuf> {
        let path = file_uri_to_path(uri)?;
        if path.components().any(|c| matches!(c, Component::ParentDir)) {
            return Err(Error::ParentComponent(path));
        }
        let real = canonicalize_existing_prefix(&path);
        let inside = self.roots.iter().any(|root| {
            let root = root.canonicalize().unwrap_or_else(|_| root.clone());
            real.starts_with(&root) && real != root
        });
        if inside {
            Ok(path)
        } else {
            Err(Error::OutsideRoots(path))
        }
    }
}

/// `file:///a/b%20c.webm` → `/a/b c.webm`; also accepts `file://localhost/...`.
pub fn file_uri_to_path(uri: &str) -> Result<PathBuf> {
    let rest = uri
        .strip_prefix("file://")
        .map(|r| r.strip_prefix("localhost").unwrap_or(r))
        .filter(|r| r.starts_with('/'))
        .ok_or_else(|| Error::UnsupportedUri(uri.to_owned()))?;
    let decoded = percent_decode(rest).ok_or_else(|| Error::UnsupportedUri(uri.to_owned()))?;
    if decoded.contains('\0') {
        return Err(Error::UnsupportedUri(uri.to_owned()));
    }
    Ok(PathBuf::from(decoded))
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Canonicalizes the longest existing ancestor and appends the rest.
fn canonicalize_existing_prefix(path: &Path) -> PathBuf {
    let mut existing = path.to_path_buf();
    let mut tail = Vec::new();
    loop {
        if let Ok(real) = existing.canonicalize() {
            return tail
                .iter()
                .rev()
                .fold(real, |acc: PathBuf, part| acc.join(part));
        }
        match (
            existing.file_name().map(|n| n.to_owned()),
            existing.parent(),
        ) {
            (Some(name), Some(parent)) => {
                tail.push(name);
                existing = parent.to_path_buf();
            }
            _ => return path.to_path_buf(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roots() -> (PathBuf, RecordingRoots) {
        let dir = std::env::temp_dir().join(format!("rkms-roots-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        (dir.clone(), RecordingRoots::new([dir]))
    }

    #[test]
    fn accepts_paths_under_a_root() {
        let (dir, roots) = roots();
        let uri = format!("file://{}/sub/rec%201.webm", dir.display());
        assert_eq!(
            roots.resolve(&uri).expect("inside"),
            dir.join("sub/rec 1.webm")
        );
    }

    #[test]
    fn refuses_escapes() {
        let (dir, roots) = roots();
        let dotdot = format!("file://{}/../x.webm", dir.display());
        assert!(matches!(
            roots.resolve(&dotdot),
            Err(Error::ParentComponent(_))
        ));
        let encoded = format!("file://{}/%2e%2e/x.webm", dir.display());
        assert!(matches!(
            roots.resolve(&encoded),
            Err(Error::ParentComponent(_))
        ));
        assert!(matches!(
            roots.resolve("file:///etc/x.webm"),
            Err(Error::OutsideRoots(_))
        ));
        assert!(matches!(
            roots.resolve("http://h/x.webm"),
            Err(Error::UnsupportedUri(_))
        ));
        assert!(matches!(
            roots.resolve("file://rel/x.webm"),
            Err(Error::UnsupportedUri(_))
        ));
        // The root itself is not a file name.
        let root_uri = format!("file://{}", dir.display());
        assert!(matches!(
            roots.resolve(&root_uri),
            Err(Error::OutsideRoots(_))
        ));
        // A sibling whose name starts like the root is outside it.
        let sibling = format!("file://{}-evil/x.webm", dir.display());
        assert!(matches!(
            roots.resolve(&sibling),
            Err(Error::OutsideRoots(_))
        ));
    }

    #[test]
    fn refuses_symlink_out_of_root() {
        let (dir, roots) = roots();
        let link = dir.join("link-out");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink("/tmp", &link).expect("symlink");
        let uri = format!("file://{}/x.webm", link.display());
        assert!(matches!(roots.resolve(&uri), Err(Error::OutsideRoots(_))));
    }
}
