//! The demo organisation (`serve --demo`, `carebridge demo`): a home-care and relief
//! organisation with a unit tree, 200 people with phones, e-mails, skills and groups, a few
//! roles, a qualification catalogue and four weeks of duties with their rosters, so a newcomer
//! can look around at once. Deterministic: the same data every time (duties start from the day
//! the demo is loaded).

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
    duties(&mut tx, &actor, &o, &ids, &teams, now).await?;
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
    // The demo organisation is listed in the discovery index, with app settings to show.
    carebridge_store::exec!(&mut tx, c => carebridge_store::sqlx::query("UPDATE organisations SET discoverable = TRUE WHERE id = $1")
        .bind(o.id.0).execute(c).await)?;
    tx.commit()
        .await
        .context("committing the demo organisation")?;
    let settings = carebridge_proto::org::AppSettings {
        languages: vec!["de".into(), "fr".into(), "it".into(), "en".into()],
        branding: carebridge_proto::org::Branding {
            primary_color: Some("#c8102e".into()),
            secondary_color: Some("#1b1f24".into()),
            logo_url: None,
        },
        support: carebridge_proto::org::Support {
            email: Some("office@demo.example.ch".into()),
            phone: Some("+41 44 000 00 00".into()),
            url: None,
        },
        ..Default::default()
    };
    carebridge_backend::discovery::save(db, &actor, &o, settings, now)
        .await
        .map_err(explain)?;
    Ok(Some(key.secret))
}

/// The qualification catalogue, who holds what, and 40 duties over the coming four weeks in
/// the teams, each with positions and a roster of members qualified for them.
async fn duties(
    tx: &mut carebridge_store::Tx,
    actor: &Actor,
    o: &OrgRef,
    ids: &[uuid::Uuid],
    teams: &[carebridge_proto::directory::Unit],
    now: Timestamp,
) -> anyhow::Result<()> {
    use carebridge_duties::service::{assignments, duties, qualifications};
    use carebridge_proto::duties::{
        CreateAssignment, CreateDuty, CreateQualification, HoldQualification, PositionInput,
    };
    let qual = |name: &str, includes: Vec<uuid::Uuid>| CreateQualification {
        name: name.into(),
        includes,
    };
    let first_aid = qualifications::create_in(tx, actor, o, &qual("Ersthelfer", vec![]), now)
        .await
        .map_err(explain)?
        .id;
    let medic = qualifications::create_in(
        tx,
        actor,
        o,
        &qual("Rettungssanitäter", vec![first_aid]),
        now,
    )
    .await
    .map_err(explain)?
    .id;
    let driver = qualifications::create_in(tx, actor, o, &qual("Fahrer Kat. C1", vec![]), now)
        .await
        .map_err(explain)?
        .id;
    // Members (index ≥ 6, not clients or relatives) hold qualifications in a fixed pattern; some
    // first-aid courses expire within the demo's four weeks.
    let members: Vec<(usize, uuid::Uuid)> = ids
        .iter()
        .copied()
        .enumerate()
        .skip(6)
        .filter(|(i, _)| i % 20 < 17)
        .collect();
    for (i, id) in &members {
        let held: &[uuid::Uuid] = match i % 4 {
            0 => &[medic],
            1 => &[first_aid, driver],
            2 => &[first_aid],
            _ => &[],
        };
        for q in held {
            let valid_until = (*q == first_aid && i % 3 == 0)
                .then(|| now + jiff::SignedDuration::from_hours(24 * (7 + (*i as i64 % 21))));
            qualifications::hold_in(
                tx,
                actor,
                o,
                *id,
                *q,
                &HoldQualification { valid_until },
                now,
            )
            .await
            .map_err(explain)?;
        }
    }
    let zurich = jiff::tz::TimeZone::get("Europe/Zurich").context("time zone Europe/Zurich")?;
    let today = now.to_zoned(zurich).date();
    const TITLES: &[(&str, &str)] = &[
        ("Sanitätsdienst Fussballspiel", "Stadion"),
        ("Nachtdienst Rettungswache", "Rettungswache"),
        ("Einsatzbereitschaft Wochenende", "Zentrale"),
        ("Sanitätsposten Stadtlauf", "Altstadt"),
        ("Krankentransport", "Spital"),
    ];
    for d in 0..40i64 {
        let team = &teams[d as usize % teams.len()];
        let day = today
            .checked_add(jiff::Span::new().days(1 + d * 28 / 40))
            .context("demo date")?;
        let (title, place) = TITLES[d as usize % TITLES.len()];
        let start_hour = [7, 13, 19][d as usize % 3];
        let duty = duties::create_in(
            tx,
            actor,
            o,
            &CreateDuty {
                unit_id: team.id,
                title: title.into(),
                location: Some(format!(
                    "{place}, {}",
                    team.name.trim_start_matches("Team ")
                )),
                description: None,
                starts_at: format!("{day}T{start_hour:02}:00"),
                ends_at: format!("{day}T{:02}:00", start_hour + 4),
                time_zone: Some("Europe/Zurich".into()),
                positions: vec![
                    PositionInput {
                        id: None,
                        name: "Rettungssanitäter".into(),
                        needed: 1,
                        qualification_id: Some(medic),
                    },
                    PositionInput {
                        id: None,
                        name: "Fahrer".into(),
                        needed: 1,
                        qualification_id: Some(driver),
                    },
                    PositionInput {
                        id: None,
                        name: "Ersthelfer".into(),
                        needed: 2,
                        qualification_id: Some(first_aid),
                    },
                ],
                chat: false,
            },
            now,
        )
        .await
        .map_err(explain)?;
        // Fill some of the places with members who qualify for them (rotating through them).
        let pick = |rem: usize, k: usize| {
            members
                .iter()
                .filter(|(i, _)| i % 4 == rem)
                .nth((d as usize * 3 + k) % 20)
                .map(|(_, id)| *id)
        };
        let plan = [(0, 0, "lead"), (1, 1, "helper"), (2, 2, "helper")];
        for (k, (pos, rem, role)) in plan.iter().enumerate() {
            if (d as usize + k) % 4 == 3 {
                continue;
            }
            let Some(person) = pick(*rem, k) else {
                continue;
            };
            let result = assignments::assign_in(
                tx,
                actor,
                o,
                duty.id,
                &CreateAssignment {
                    person_id: person,
                    position_id: Some(duty.positions[*pos].id),
                    role: Some((*role).into()),
                    override_qualification: false,
                    note: None,
                    chat: None,
                },
                now,
            )
            .await;
            // A first-aid course that expires before the duty leaves the place open.
            match result {
                Ok(_) => {}
                Err(carebridge_web::ServiceError::Conflict {
                    code: "not_qualified" | "already_assigned",
                    ..
                }) => {}
                Err(e) => return Err(explain(e)),
            }
        }
    }
    Ok(())
}
