//! The demo organisation (`serve --demo`, `carebridge demo`): a home-care and relief
//! organisation with a unit tree, 200 people with phones, e-mails, skills and groups, and a few
//! roles, so a newcomer can look around at once. Deterministic: the same data every time.

use anyhow::Context;
use carebridge_domain::auth::{Actor, Permission, Source};
use carebridge_domain::{OrgId, Timestamp};
use carebridge_proto::directory::{
    Address, Contact, CreatePerson, CreateRoleAssignment, CreateUnit,
};
use carebridge_proto::identity::CreateApiKey;
use carebridge_proto::org::CreateOrg;
use carebridge_store::Db;
use carebridge_store::orgs::OrgRef;

use crate::commands::explain;

pub const SLUG: &str = "demo";

const GIVEN: &[&str] = &[
    "Anna", "Luca", "Sophie", "Noah", "Mia", "Elias", "Léa", "Jonas", "Zoë", "Matteo", "Aino",
    "Eero", "Maja", "Lukas", "Chiara", "Jérôme", "Sanna", "Björn", "Lena", "Nils", "Élodie",
    "Marco", "Helmi", "Oskar", "Giulia",
];
const FAMILY: &[&str] = &[
    "Müller",
    "Meier",
    "Schmid",
    "Keller",
    "Weber",
    "Huber",
    "Schneider",
    "Meyer",
    "Steiner",
    "Fischer",
    "Brunner",
    "Baumann",
    "Gerber",
    "Frei",
    "Zimmermann",
    "Moser",
    "Widmer",
    "Wyss",
    "Graf",
    "Roth",
    "Virtanen",
    "Korhonen",
    "Lindqvist",
    "Rossi",
    "Bianchi",
    "Dubois",
    "Favre",
    "Sjöström",
    "Nieminen",
    "Bühler",
];
const SKILLS: &[&str] = &[
    "Pflegefachperson HF",
    "FaGe",
    "Rettungssanitäter",
    "Fahrer",
    "Erste Hilfe",
    "Palliative Care",
    "Wundpflege",
];
const GROUPS: &[&str] = &[
    "Frühdienst",
    "Spätdienst",
    "Nachtdienst",
    "Einsatzleitung",
    "Springerpool",
];
const PLACES: &[(&str, &str)] = &[
    ("5000", "Aarau"),
    ("5400", "Baden"),
    ("5200", "Brugg"),
    ("6000", "Luzern"),
    ("6300", "Zug"),
    ("8000", "Zürich"),
];

/// Creates the demo organisation unless it exists. Returns its admin API key when created.
pub async fn ensure(db: &Db, now: Timestamp) -> anyhow::Result<Option<String>> {
    {
        let mut c = db.read().await?;
        if carebridge_store::orgs::resolve(&mut c, SLUG)
            .await?
            .is_some()
        {
            return Ok(None);
        }
    }
    let actor = Actor::system("demo", Source::Demo);
    let draft = carebridge_backend::service::draft(&CreateOrg {
        slug: SLUG.into(),
        name: "Spitex & Rettung Demo".into(),
        default_region: "CH".into(),
        default_language: "de".into(),
        contact_email: Some("office@demo.example.ch".into()),
    })
    .map_err(|v| explain(v.into()))?;
    let mut tx = db.begin().await?;
    let org = carebridge_backend::service::create_in(&mut tx, &actor, draft, now)
        .await
        .map_err(explain)?;
    let o = OrgRef {
        id: OrgId(org.id),
        slug: org.slug.clone(),
        default_region: org.default_region.clone(),
        default_language: org.default_language.clone(),
    };
    let unit = |name: &str, parent: Option<uuid::Uuid>| CreateUnit {
        name: name.into(),
        parent_id: parent,
    };
    use carebridge_directory::service::{people, roles, units};
    let nord = units::create_in(&mut tx, &actor, &o, &unit("Region Nord", None), now)
        .await
        .map_err(explain)?;
    let sued = units::create_in(&mut tx, &actor, &o, &unit("Region Süd", None), now)
        .await
        .map_err(explain)?;
    let zentrale = units::create_in(&mut tx, &actor, &o, &unit("Zentrale", None), now)
        .await
        .map_err(explain)?;
    let mut teams = Vec::new();
    for (name, parent) in [
        ("Team Aarau", nord.id),
        ("Team Baden", nord.id),
        ("Team Brugg", nord.id),
        ("Team Luzern", sued.id),
        ("Team Zug", sued.id),
    ] {
        teams.push(
            units::create_in(&mut tx, &actor, &o, &unit(name, Some(parent)), now)
                .await
                .map_err(explain)?,
        );
    }
    let mut ids = Vec::new();
    for i in 0..200usize {
        let given = GIVEN[i % GIVEN.len()];
        let family = FAMILY[(i * 7 + i / GIVEN.len()) % FAMILY.len()];
        let kind = match i % 20 {
            0..=11 => "staff",
            12..=16 => "volunteer",
            17 | 18 => "client",
            _ => "relative",
        };
        let team = &teams[i % teams.len()];
        let (plz, town) = PLACES[i % PLACES.len()];
        let local = format!(
            "{}.{}{}",
            carebridge_domain::search::fold(given),
            carebridge_domain::search::fold(family),
            i
        );
        let p = CreatePerson {
            given_name: given.into(),
            family_name: family.into(),
            kind: Some(kind.into()),
            external_id: Some(format!("HR-{:05}", 1000 + i)),
            language: Some(
                if i % 9 == 0 {
                    "fr"
                } else if i % 13 == 0 {
                    "it"
                } else {
                    "de"
                }
                .into(),
            ),
            emails: vec![Contact {
                value: format!("{local}@demo.example.ch"),
                kind: "work".into(),
            }],
            phones: vec![
                Contact {
                    value: format!("079 {:03} {:02} {:02}", 100 + i, i % 100, (i * 7) % 100),
                    kind: "mobile".into(),
                },
                Contact {
                    value: format!(
                        "062 {:03} {:02} {:02}",
                        200 + i,
                        (i * 3) % 100,
                        (i * 11) % 100
                    ),
                    kind: "work".into(),
                },
            ],
            address: Some(Address {
                street: Some(format!("Bahnhofstrasse {}", 1 + i % 90)),
                postal_code: Some(plz.into()),
                locality: Some(town.into()),
                country: Some("CH".into()),
            }),
            unit_ids: vec![if i % 25 == 0 { zentrale.id } else { team.id }],
            groups: vec![GROUPS[i % GROUPS.len()].to_string()],
            skills: (0..(1 + i % 3))
                .map(|k| SKILLS[(i + k * 3) % SKILLS.len()].to_string())
                .collect(),
        };
        ids.push(
            people::create_in(&mut tx, &actor, &o, &p, now)
                .await
                .map_err(explain)?
                .id,
        );
    }
    let role = |person_id, role: &str, unit_id| CreateRoleAssignment {
        person_id,
        role: role.into(),
        unit_id,
    };
    roles::create_in(&mut tx, &actor, &o, &role(ids[0], "org_admin", None), now)
        .await
        .map_err(explain)?;
    roles::create_in(
        &mut tx,
        &actor,
        &o,
        &role(ids[1], "unit_admin", Some(nord.id)),
        now,
    )
    .await
    .map_err(explain)?;
    roles::create_in(
        &mut tx,
        &actor,
        &o,
        &role(ids[2], "unit_admin", Some(sued.id)),
        now,
    )
    .await
    .map_err(explain)?;
    for (i, id) in ids.iter().enumerate().skip(3) {
        let r = match i {
            3..=5 => "dispatcher",
            _ if i % 20 == 17 || i % 20 == 18 => "client",
            _ if i % 20 == 19 => "relative",
            _ => "member",
        };
        roles::create_in(&mut tx, &actor, &o, &role(*id, r, None), now)
            .await
            .map_err(explain)?;
    }
    let key = carebridge_identity::apikeys::create_in(
        &mut tx,
        &actor,
        Some(o.id),
        &CreateApiKey {
            name: "demo admin key".into(),
            permissions: Permission::org_admin()
                .iter()
                .map(|p| p.as_str().to_string())
                .collect(),
            expires_at: None,
            person_id: None,
        },
        now,
    )
    .await
    .map_err(explain)?;
    tx.commit()
        .await
        .context("committing the demo organisation")?;
    Ok(Some(key.secret))
}
