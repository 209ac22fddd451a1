//! Newtype ids. A `PersonId` can never be passed where an `OrgId` is meant. All ids are UUIDv7
//! (time-ordered, so inserts stay index-friendly); the timestamp part comes from the caller's
//! clock.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use uuid::Uuid;

use crate::time::Timestamp;

macro_rules! id_type {
    ($($(#[$m:meta])* $name:ident),* $(,)?) => {$(
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A fresh time-ordered id whose time part is `now`.
            pub fn generate(now: Timestamp) -> Self {
                Self(new_v7(now))
            }
            pub fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }

        impl From<Uuid> for $name {
            fn from(u: Uuid) -> Self {
                Self(u)
            }
        }
    )*};
}

id_type!(
    /// An organisation (tenant).
    OrgId,
    /// A unit in an organisation's tree.
    UnitId,
    /// A person (member of exactly one organisation).
    PersonId,
    /// A sign-in identity, linkable to persons in several organisations.
    AccountId,
    /// A role assignment (person + role + scope).
    RoleAssignmentId,
    /// A group of people inside an organisation.
    GroupId,
    /// A skill or qualification inside an organisation.
    SkillId,
    /// An API key.
    ApiKeyId,
    /// A duty (an event with positions and a roster).
    DutyId,
    /// A needed position of a duty.
    PositionId,
    /// A person's assignment to (or sign-up request for) a duty.
    AssignmentId,
    /// A qualification in an organisation's catalogue.
    QualificationId,
    /// A personal calendar feed (secret URL).
    FeedId,
);

/// A UUIDv7 from the given time; the random part comes from the uuid crate's generator.
pub fn new_v7(now: Timestamp) -> Uuid {
    let ms = now.as_millisecond().max(0) as u64;
    let ts =
        uuid::Timestamp::from_unix(uuid::NoContext, ms / 1000, ((ms % 1000) * 1_000_000) as u32);
    Uuid::new_v7(ts)
}
