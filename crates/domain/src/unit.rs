//! Units form a tree inside an organisation. The tree is stored as materialised paths
//! (`/<root id>/<child id>/`), so "the subtree of X" is a prefix match and a move rewrites the
//! prefix of the moved subtree.

use crate::ids::UnitId;
use crate::validate::{Violations, bounded_text};

/// Maximum depth of the unit tree.
pub const MAX_DEPTH: usize = 12;

/// The path of a unit whose parent has `parent_path` (or a root when `None`).
pub fn child_path(parent_path: Option<&str>, id: UnitId) -> String {
    format!("{}{}/", parent_path.unwrap_or("/"), id)
}

/// Depth of a path: `/a/` is 1.
pub fn depth(path: &str) -> usize {
    path.matches('/').count().saturating_sub(1)
}

/// Validates a unit name.
pub fn check_name(name: &str) -> Result<String, Violations> {
    let mut v = Violations::new();
    let n = bounded_text(&mut v, "/name", name, 1, 100);
    if n.contains('/') {
        v.push(
            "/name",
            "invalid_name",
            "a unit name must not contain '/' (it separates unit paths in imports)",
        );
    }
    v.into_result().map(|()| n)
}

/// Checks a move of the unit at `path` under a new parent at `new_parent_path`: a unit can't
/// become its own descendant, and the tree can't grow deeper than [`MAX_DEPTH`].
pub fn check_move(
    path: &str,
    subtree_height: usize,
    new_parent_path: Option<&str>,
) -> Result<(), Violations> {
    if let Some(p) = new_parent_path {
        if p.starts_with(path) {
            return Err(Violations::single(
                "/parent_id",
                "cycle",
                "a unit cannot be moved below itself or one of its descendants",
            ));
        }
        if depth(p) + subtree_height > MAX_DEPTH {
            return Err(Violations::single(
                "/parent_id",
                "too_deep",
                format!("the unit tree has at most {MAX_DEPTH} levels"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    #[test]
    fn paths_and_moves() {
        let a = UnitId(Uuid::from_u128(1));
        let b = UnitId(Uuid::from_u128(2));
        let pa = child_path(None, a);
        let pb = child_path(Some(&pa), b);
        assert_eq!(depth(&pa), 1);
        assert_eq!(depth(&pb), 2);
        assert!(pb.starts_with(&pa));
        assert!(check_move(&pa, 2, Some(&pb)).is_err());
        assert!(check_move(&pa, 1, Some(&pa)).is_err());
        assert!(check_move(&pb, 1, None).is_ok());
        assert!(check_name("Region Nord").is_ok());
        assert!(check_name("A/B").is_err());
        assert!(check_name("  ").is_err());
    }
}
