//! Who may see which contact fields of whom (seed 001's access rights).
//!
//! By default a person's contact data is visible to organisation-wide readers (administrators,
//! organisation keys), to unit admins of any unit above the person, and to the person. Grants
//! open it further: "members of unit/group X may see fields F of people in unit/group Y". A
//! unit on either side means its whole subtree (members of `Region Nord` include the members of
//! `Region Nord/Team 3`).
//!
//! A [`Viewer`] is one caller's rules resolved against the current unit tree: sets of unit and
//! group ids with the fields they open. It is pure data, so the same value drives the SQL
//! filter of a listing, the masking of each row, the sync feed (which stores viewers by digest
//! to know what a client saw earlier) and the reference model of the property test.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// A set of contact fields, as bits.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Fields(pub u8);

impl Fields {
    pub const NONE: Fields = Fields(0);
    pub const NAME: Fields = Fields(1);
    pub const PHONES: Fields = Fields(2);
    pub const EMAILS: Fields = Fields(4);
    pub const ADDRESS: Fields = Fields(8);
    pub const SKILLS: Fields = Fields(16);
    pub const GROUPS: Fields = Fields(32);
    /// What only full viewers see: external key, language.
    pub const ADMIN: Fields = Fields(64);
    /// Everything a grant can open.
    pub const GRANTABLE: Fields = Fields(63);
    /// Everything.
    pub const FULL: Fields = Fields(127);

    /// The grantable fields with their wire names, in display order.
    pub const NAMED: [(&'static str, Fields); 6] = [
        ("name", Fields::NAME),
        ("phones", Fields::PHONES),
        ("emails", Fields::EMAILS),
        ("address", Fields::ADDRESS),
        ("skills", Fields::SKILLS),
        ("groups", Fields::GROUPS),
    ];

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn contains(self, other: Fields) -> bool {
        self.0 & other.0 == other.0
    }

    pub fn union(self, other: Fields) -> Fields {
        Fields(self.0 | other.0)
    }

    /// Parses wire names; `Err` names the first unknown one. Duplicates are fine.
    pub fn parse<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<Fields, String> {
        let mut f = Fields::NONE;
        for n in names {
            match Fields::NAMED.iter().find(|(k, _)| *k == n) {
                Some((_, bit)) => f = f.union(*bit),
                None => return Err(n.to_string()),
            }
        }
        Ok(f)
    }

    /// The wire names of the grantable fields in this set.
    pub fn names(self) -> Vec<String> {
        Fields::NAMED
            .iter()
            .filter(|(_, b)| self.contains(*b))
            .map(|(k, _)| (*k).to_string())
            .collect()
    }
}

/// Which side of a grant: a unit (with its subtree) or a group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    Unit,
    Group,
}

impl Side {
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Unit => "unit",
            Side::Group => "group",
        }
    }

    pub fn parse(s: &str) -> Option<Side> {
        match s {
            "unit" => Some(Side::Unit),
            "group" => Some(Side::Group),
            _ => None,
        }
    }
}

/// A stored grant: members of `viewer` may see `fields` of people in `target`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    pub viewer: (Side, Uuid),
    pub target: (Side, Uuid),
    pub fields: Fields,
}

/// What one person is a member of: unit ids (direct memberships) and group ids.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Memberships {
    #[serde(rename = "u")]
    pub units: Vec<Uuid>,
    #[serde(rename = "g")]
    pub groups: Vec<Uuid>,
}

/// One caller's visibility, resolved against the unit tree at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Viewer {
    /// Sees everyone, every field.
    pub all: bool,
    /// The caller's own person (sees all of themselves).
    pub own: Option<Uuid>,
    /// Units whose members the caller sees whole (unit admin over them).
    pub full_units: BTreeSet<Uuid>,
    /// Units whose members the caller sees through grants, with the fields.
    pub unit_fields: BTreeMap<Uuid, Fields>,
    /// Groups whose members the caller sees through grants, with the fields.
    pub group_fields: BTreeMap<Uuid, Fields>,
}

/// A unit of the tree: id and materialised path (`/<id>/<id>/`).
#[derive(Clone, Debug)]
pub struct TreeUnit {
    pub id: Uuid,
    pub path: String,
}

/// The ids of the units at or below the unit with path `root`.
fn subtree<'a>(tree: &'a [TreeUnit], root: &'a str) -> impl Iterator<Item = Uuid> + 'a {
    tree.iter()
        .filter(move |u| u.path.starts_with(root))
        .map(|u| u.id)
}

impl Viewer {
    /// Everyone, everything (organisation-wide readers).
    pub fn everyone() -> Viewer {
        Viewer {
            all: true,
            ..Viewer::default()
        }
    }

    /// Resolves a person's visibility. `admin_roots` are the paths of the units they are unit
    /// admin (or another directory-reading role) over; `me` what they are a member of; `grants`
    /// all grants of the organisation (those that apply are picked here).
    pub fn resolve(
        tree: &[TreeUnit],
        own: Uuid,
        admin_roots: &[String],
        me: &Memberships,
        grants: &[Grant],
    ) -> Viewer {
        let path_of: BTreeMap<Uuid, &str> = tree.iter().map(|u| (u.id, u.path.as_str())).collect();
        let mut v = Viewer {
            own: Some(own),
            ..Viewer::default()
        };
        for root in admin_roots {
            v.full_units.extend(subtree(tree, root));
        }
        let my_paths: Vec<&str> = me
            .units
            .iter()
            .filter_map(|u| path_of.get(u).copied())
            .collect();
        for g in grants {
            let applies = match g.viewer {
                (Side::Unit, x) => path_of
                    .get(&x)
                    .is_some_and(|xp| my_paths.iter().any(|p| p.starts_with(xp))),
                (Side::Group, x) => me.groups.contains(&x),
            };
            if !applies || g.fields.is_empty() {
                continue;
            }
            match g.target {
                (Side::Unit, y) => {
                    if let Some(yp) = path_of.get(&y) {
                        for u in subtree(tree, yp) {
                            let e = v.unit_fields.entry(u).or_default();
                            *e = e.union(g.fields);
                        }
                    }
                }
                (Side::Group, y) => {
                    let e = v.group_fields.entry(y).or_default();
                    *e = e.union(g.fields);
                }
            }
        }
        v
    }

    /// The fields of person `id` (member of `m`) this viewer sees; empty means not visible.
    pub fn fields(&self, id: Uuid, m: &Memberships) -> Fields {
        if self.all || self.own == Some(id) || m.units.iter().any(|u| self.full_units.contains(u)) {
            return Fields::FULL;
        }
        let mut f = Fields::NONE;
        for u in &m.units {
            if let Some(x) = self.unit_fields.get(u) {
                f = f.union(*x);
            }
        }
        for g in &m.groups {
            if let Some(x) = self.group_fields.get(g) {
                f = f.union(*x);
            }
        }
        f
    }

    /// The unit ids whose members this viewer sees in some way (for the SQL filter).
    pub fn unit_ids(&self) -> Vec<Uuid> {
        let mut ids: BTreeSet<Uuid> = self.full_units.clone();
        ids.extend(self.unit_fields.keys().copied());
        ids.into_iter().collect()
    }

    /// The group ids whose members this viewer sees in some way (for the SQL filter).
    pub fn group_ids(&self) -> Vec<Uuid> {
        self.group_fields.keys().copied().collect()
    }

    /// A stable digest of the rules (two equal viewers have equal digests).
    pub fn digest(&self) -> String {
        hex::encode(Sha256::digest(canonical(self).as_bytes()))
    }
}

/// A canonical text form of a viewer (ordered sets, fixed order).
fn canonical(v: &Viewer) -> String {
    let mut s = String::new();
    s.push_str(if v.all { "all;" } else { "some;" });
    if let Some(o) = v.own {
        s.push_str(&format!("own={o};"));
    }
    for u in &v.full_units {
        s.push_str(&format!("f={u};"));
    }
    for (u, f) in &v.unit_fields {
        s.push_str(&format!("u={u}:{};", f.0));
    }
    for (g, f) in &v.group_fields {
        s.push_str(&format!("g={g}:{};", f.0));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> Uuid {
        Uuid::from_bytes([n; 16])
    }

    fn tree() -> Vec<TreeUnit> {
        // 1 ─ 2 ─ 3, and 4 alone.
        vec![
            TreeUnit {
                id: id(1),
                path: format!("/{}/", id(1)),
            },
            TreeUnit {
                id: id(2),
                path: format!("/{}/{}/", id(1), id(2)),
            },
            TreeUnit {
                id: id(3),
                path: format!("/{}/{}/{}/", id(1), id(2), id(3)),
            },
            TreeUnit {
                id: id(4),
                path: format!("/{}/", id(4)),
            },
        ]
    }

    fn m(units: &[u8], groups: &[u8]) -> Memberships {
        Memberships {
            units: units.iter().map(|n| id(*n)).collect(),
            groups: groups.iter().map(|n| id(*n)).collect(),
        }
    }

    #[test]
    fn fields_parse_and_name() {
        let f = Fields::parse(["phones", "name", "phones"]).unwrap();
        assert_eq!(f, Fields(3));
        assert_eq!(f.names(), ["name", "phones"]);
        assert_eq!(Fields::parse(["salary"]), Err("salary".into()));
        assert!(Fields::FULL.contains(Fields::GRANTABLE));
    }

    #[test]
    fn grants_apply_down_both_subtrees() {
        let t = tree();
        let grants = vec![
            // Members of 1 (and below) see names and phones of people in 2 (and below).
            Grant {
                viewer: (Side::Unit, id(1)),
                target: (Side::Unit, id(2)),
                fields: Fields::NAME.union(Fields::PHONES),
            },
            // Members of group 9 see e-mails of group 8.
            Grant {
                viewer: (Side::Group, id(9)),
                target: (Side::Group, id(8)),
                fields: Fields::EMAILS,
            },
            // Members of 4 see addresses in 4: does not apply to a member of 3.
            Grant {
                viewer: (Side::Unit, id(4)),
                target: (Side::Unit, id(4)),
                fields: Fields::ADDRESS,
            },
        ];
        let me = id(100);
        let v = Viewer::resolve(&t, me, &[], &m(&[3], &[9]), &grants);
        assert_eq!(v.fields(me, &m(&[], &[])), Fields::FULL);
        assert_eq!(v.fields(id(101), &m(&[3], &[])), Fields(3));
        assert_eq!(v.fields(id(101), &m(&[1], &[])), Fields::NONE);
        assert_eq!(v.fields(id(101), &m(&[2], &[8])), Fields(7));
        assert_eq!(v.fields(id(101), &m(&[4], &[])), Fields::NONE);
        // A unit admin over 2 sees its subtree whole.
        let a = Viewer::resolve(&t, me, &[t[1].path.clone()], &m(&[], &[]), &[]);
        assert_eq!(a.fields(id(101), &m(&[3], &[])), Fields::FULL);
        assert_eq!(a.fields(id(101), &m(&[1], &[])), Fields::NONE);
        assert_ne!(a.digest(), v.digest());
        assert_eq!(v.digest(), v.clone().digest());
        assert_eq!(Viewer::everyone().fields(id(5), &m(&[], &[])), Fields::FULL);
    }
}
