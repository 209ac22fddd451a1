//! People: the person row (contact data as JSON), search tokens, unit memberships, groups and
//! skills (labels).
//!
//! Search: `person_tokens` holds one row per token, keyed `(org_id, token, sort_key,
//! person_id)`, so a query's first word is a key range already in name order. The person's
//! tokens are also kept in the row (`people.search`, `" t1 t2 … "`): further words are checked
//! against it, and it finds the token rows by key before they change ([`drop_tokens`]). There
//! is no per-person index on the tokens and no foreign key: each would cost every token write
//! another B-tree operation, and a bulk import writes five or more tokens per person.

use std::collections::HashMap;

use carebridge_domain::time::from_millis;
use carebridge_domain::{OrgId, PersonId};
use carebridge_proto::directory::{Address, Contact, Person, UnitRef};
use carebridge_store::{Exec, StoreError, Tx, exec, run, sqlx};
use uuid::Uuid;

use super::placeholders;

type PersonRow = (
    Uuid,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    String,
    String,
    String,
    bool,
    i64,
    i64,
    i64,
);

const COLS: &str = "p.id, p.kind, p.given_name, p.family_name, p.external_id, p.language, p.emails, p.phones, p.address, \
                    p.active, p.version, p.created_at, p.updated_at";

fn json<T: serde::de::DeserializeOwned>(s: &str) -> Result<T, StoreError> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt(format!("person json: {e}")))
}

fn person(r: PersonRow) -> Result<Person, StoreError> {
    Ok(Person {
        id: r.0,
        kind: r.1,
        given_name: r.2,
        family_name: r.3,
        external_id: r.4,
        language: r.5,
        emails: json::<Vec<Contact>>(&r.6)?,
        phones: json::<Vec<Contact>>(&r.7)?,
        address: json::<Address>(&r.8)?,
        units: Vec::new(),
        groups: Vec::new(),
        skills: Vec::new(),
        active: r.9,
        version: r.10,
        created_at: from_millis(r.11),
        updated_at: from_millis(r.12),
        fields: None,
    })
}

fn to_json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// Inserts the person row (without tokens, units and labels: see [`set_links`]).
pub async fn insert(tx: &mut Tx, org: OrgId, p: &Person, sort_key: &str) -> Result<(), StoreError> {
    exec!(tx, c => sqlx::query(
        "INSERT INTO people (id, org_id, kind, given_name, family_name, sort_key, external_id, language, emails, phones, address, \
         active, version, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)")
        .bind(p.id).bind(org.0).bind(&p.kind).bind(&p.given_name).bind(&p.family_name).bind(sort_key)
        .bind(&p.external_id).bind(&p.language).bind(to_json(&p.emails)).bind(to_json(&p.phones)).bind(to_json(&p.address))
        .bind(p.active).bind(p.version).bind(p.created_at.as_millisecond()).bind(p.updated_at.as_millisecond())
        .execute(c).await)?;
    Ok(())
}

/// Overwrites the person row if `expected_version` is current.
pub async fn update(
    tx: &mut Tx,
    org: OrgId,
    p: &Person,
    sort_key: &str,
    expected_version: i64,
) -> Result<bool, StoreError> {
    // The token rows are found by the stored sort key and tokens, which this overwrites.
    drop_tokens(tx, org, &[p.id]).await?;
    let n = exec!(tx, c => sqlx::query(
        "UPDATE people SET kind = $4, given_name = $5, family_name = $6, sort_key = $7, external_id = $8, language = $9, \
         emails = $10, phones = $11, address = $12, active = $13, version = $14, updated_at = $15 \
         WHERE org_id = $1 AND id = $2 AND version = $3")
        .bind(org.0).bind(p.id).bind(expected_version).bind(&p.kind).bind(&p.given_name).bind(&p.family_name).bind(sort_key)
        .bind(&p.external_id).bind(&p.language).bind(to_json(&p.emails)).bind(to_json(&p.phones)).bind(to_json(&p.address))
        .bind(p.active).bind(p.version).bind(p.updated_at.as_millisecond())
        .execute(c).await)?;
    Ok(n == 1)
}

/// Deletes the search token rows of these people, found by key from their stored sort key and
/// tokens (`people.search`); run before either changes and before a person is deleted.
pub async fn drop_tokens(tx: &mut Tx, org: OrgId, ids: &[Uuid]) -> Result<(), StoreError> {
    use carebridge_store::bulk::{self, Col, Rows};
    let mut keys = Rows::new();
    for chunk in ids.chunks(500) {
        let sql = format!(
            "SELECT id, sort_key, search FROM people WHERE org_id = $1 AND id IN ({})",
            (0..chunk.len())
                .map(|i| format!("${}", i + 2))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let rows: Vec<(Uuid, String, String)> = run!(tx, c => {
            let mut q = sqlx::query_as(&sql).bind(org.0);
            for id in chunk {
                q = q.bind(*id);
            }
            q.fetch_all(c).await
        })?;
        for (id, sort_key, search) in &rows {
            for t in carebridge_domain::search::search_tokens(search) {
                keys.text(t).text(sort_key).uuid(*id).end();
            }
        }
    }
    bulk::delete_keys(
        tx,
        "person_tokens",
        org.0,
        &[
            ("token", Col::Text),
            ("sort_key", Col::Text),
            ("person_id", Col::Uuid),
        ],
        keys,
    )
    .await?;
    Ok(())
}

/// Writes a person's search tokens (the person has none: new, or [`update`]d), and replaces
/// their units and labels.
pub async fn set_links(
    tx: &mut Tx,
    org: OrgId,
    id: Uuid,
    sort_key: &str,
    tokens: &[String],
    units: &[Uuid],
    labels: &[Uuid],
) -> Result<(), StoreError> {
    let search = carebridge_domain::search::search_text(tokens);
    exec!(tx, c => sqlx::query("UPDATE people SET search = $3 WHERE org_id = $1 AND id = $2").bind(org.0).bind(id).bind(&search).execute(c).await)?;
    exec!(tx, c => sqlx::query("DELETE FROM person_units WHERE org_id = $1 AND person_id = $2").bind(org.0).bind(id).execute(c).await)?;
    exec!(tx, c => sqlx::query("DELETE FROM person_labels WHERE org_id = $1 AND person_id = $2").bind(org.0).bind(id).execute(c).await)?;
    for t in tokens {
        exec!(tx, c => sqlx::query("INSERT INTO person_tokens (org_id, token, sort_key, person_id) VALUES ($1, $2, $3, $4)")
            .bind(org.0).bind(t).bind(sort_key).bind(id).execute(c).await)?;
    }
    for u in units {
        exec!(tx, c => sqlx::query("INSERT INTO person_units (person_id, unit_id, org_id) VALUES ($1, $2, $3)")
            .bind(id).bind(*u).bind(org.0).execute(c).await)?;
    }
    for l in labels {
        exec!(tx, c => sqlx::query("INSERT INTO person_labels (person_id, label_id, org_id) VALUES ($1, $2, $3)")
            .bind(id).bind(*l).bind(org.0).execute(c).await)?;
    }
    Ok(())
}

/// Ids of the labels (`group` or `skill`) with these names, creating missing ones.
pub async fn ensure_labels(
    tx: &mut Tx,
    org: OrgId,
    kind: &str,
    names: &[String],
    now_ms: i64,
    new_id: impl Fn() -> Uuid,
) -> Result<Vec<Uuid>, StoreError> {
    let mut ids = Vec::with_capacity(names.len());
    for name in names {
        let key = carebridge_domain::search::fold(name);
        exec!(tx, c => sqlx::query(
            "INSERT INTO labels (id, org_id, kind, name, name_key, created_at) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (org_id, kind, name_key) DO NOTHING")
            .bind(new_id()).bind(org.0).bind(kind).bind(name).bind(&key).bind(now_ms).execute(c).await)?;
        let id: Uuid = run!(tx, c => sqlx::query_scalar("SELECT id FROM labels WHERE org_id = $1 AND kind = $2 AND name_key = $3")
            .bind(org.0).bind(kind).bind(&key).fetch_one(c).await)?;
        ids.push(id);
    }
    Ok(ids)
}

/// Fills units, groups and skills of the given people (one query each for the whole page).
async fn attach(x: &mut impl Exec, org: OrgId, people: &mut [Person]) -> Result<(), StoreError> {
    if people.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = people.iter().map(|p| p.id).collect();
    let ph = placeholders(2, ids.len());
    let sql = format!(
        "SELECT pu.person_id, u.id, u.name FROM person_units pu JOIN units u ON u.id = pu.unit_id \
         WHERE pu.org_id = $1 AND pu.person_id IN ({ph}) ORDER BY u.name"
    );
    let units: Vec<(Uuid, Uuid, String)> = run!(x, c => {
        let mut q = sqlx::query_as(&sql).bind(org.0);
        for id in &ids { q = q.bind(*id); }
        q.fetch_all(c).await
    })?;
    let sql = format!(
        "SELECT pl.person_id, l.kind, l.name FROM person_labels pl JOIN labels l ON l.id = pl.label_id \
         WHERE pl.org_id = $1 AND pl.person_id IN ({ph}) ORDER BY l.name_key"
    );
    let labels: Vec<(Uuid, String, String)> = run!(x, c => {
        let mut q = sqlx::query_as(&sql).bind(org.0);
        for id in &ids { q = q.bind(*id); }
        q.fetch_all(c).await
    })?;
    for p in people.iter_mut() {
        p.units = units
            .iter()
            .filter(|u| u.0 == p.id)
            .map(|u| UnitRef {
                id: u.1,
                name: u.2.clone(),
            })
            .collect();
        for (_, kind, name) in labels.iter().filter(|l| l.0 == p.id) {
            match kind.as_str() {
                "group" => p.groups.push(name.clone()),
                _ => p.skills.push(name.clone()),
            }
        }
    }
    Ok(())
}

pub async fn get(
    x: &mut impl Exec,
    org: OrgId,
    id: PersonId,
) -> Result<Option<Person>, StoreError> {
    let sql = format!("SELECT {COLS} FROM people p WHERE p.org_id = $1 AND p.id = $2");
    let r: Option<PersonRow> =
        run!(x, c => sqlx::query_as(&sql).bind(org.0).bind(id.0).fetch_optional(c).await)?;
    let Some(r) = r else { return Ok(None) };
    let mut v = vec![person(r)?];
    attach(x, org, &mut v).await?;
    Ok(v.pop())
}

/// People by id (any order; unknown ids are left out), with units and labels.
pub async fn by_ids(
    x: &mut impl Exec,
    org: OrgId,
    ids: &[Uuid],
) -> Result<Vec<Person>, StoreError> {
    let mut out = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(500) {
        let sql = format!(
            "SELECT {COLS} FROM (VALUES {}) m CROSS JOIN people p WHERE p.id = m.column1 AND p.org_id = $1",
            carebridge_store::id_values(2, chunk.len())
        );
        let rows: Vec<PersonRow> = run!(x, c => {
            let mut q = sqlx::query_as(&sql).bind(org.0);
            for id in chunk { q = q.bind(*id); }
            q.fetch_all(c).await
        })?;
        let mut people = rows
            .into_iter()
            .map(person)
            .collect::<Result<Vec<_>, _>>()?;
        attach(x, org, &mut people).await?;
        out.extend(people);
    }
    Ok(out)
}

/// Who a restricted caller may see (`domain::visibility::Viewer` in SQL terms): themselves,
/// and members of these units and groups.
#[derive(Clone, Debug, Default)]
pub struct Visible {
    pub own: Option<Uuid>,
    pub units: Vec<Uuid>,
    pub groups: Vec<Uuid>,
}

/// The SQL condition "person `p` is visible" for `v` (`$1` is the organisation), with its
/// parameters numbered from `$first`.
pub(crate) fn visible_sql(v: &Visible, first: usize) -> (String, Vec<Uuid>) {
    let mut ids: Vec<Uuid> = Vec::new();
    let next = |id: Uuid, ids: &mut Vec<Uuid>| {
        ids.push(id);
        format!("${}", first + ids.len() - 1)
    };
    let mut any = vec!["1 = 0".to_string()];
    if let Some(own) = v.own {
        any.push(format!("p.id = {}", next(own, &mut ids)));
    }
    if !v.units.is_empty() {
        let ph: Vec<String> = v.units.iter().map(|u| next(*u, &mut ids)).collect();
        any.push(format!(
            "EXISTS (SELECT 1 FROM person_units vu WHERE vu.person_id = p.id AND vu.org_id = $1 AND vu.unit_id IN ({}))",
            ph.join(", ")
        ));
    }
    if !v.groups.is_empty() {
        let ph: Vec<String> = v.groups.iter().map(|g| next(*g, &mut ids)).collect();
        any.push(format!(
            "EXISTS (SELECT 1 FROM person_labels vl WHERE vl.person_id = p.id AND vl.org_id = $1 AND vl.label_id IN ({}))",
            ph.join(", ")
        ));
    }
    (format!("({})", any.join(" OR ")), ids)
}

/// Filters of a people listing (already normalised).
#[derive(Clone, Debug, Default)]
pub struct Filter {
    /// `None`: everyone.
    pub visible: Option<Visible>,
    /// Folded query words; each must prefix-match one of the person's tokens.
    pub words: Vec<String>,
    /// Path prefix of a unit subtree.
    pub unit_path: Option<String>,
    pub group_key: Option<String>,
    pub skill_key: Option<String>,
    pub active: Option<bool>,
}

/// The `(sort_key, person)` pairs whose tokens start with `word`, in name order after `after`,
/// at most `limit` distinct people. Reads the token index range in `(sort_key, person)` order
/// without `DISTINCT` (a hash aggregate over every match was the cost on PostgreSQL): a person
/// matching through several tokens appears on adjacent rows and is dropped here; when that
/// leaves the page short, the next read asks for more.
async fn word_matches(
    x: &mut impl Exec,
    org: OrgId,
    word: &str,
    after: Option<&(String, Uuid)>,
    limit: i64,
) -> Result<Vec<(String, Uuid)>, StoreError> {
    let hi = carebridge_domain::search::prefix_upper(word);
    let (sk, id) = after.cloned().unwrap_or((String::new(), Uuid::nil()));
    // Without a cursor the keyset condition is left out: SQLite plans the plain range faster.
    let keyset = if after.is_some() {
        "AND (t.sort_key > $4 OR (t.sort_key = $4 AND t.person_id > $5))"
    } else {
        ""
    };
    let limit_ph = if after.is_some() { "$6" } else { "$4" };
    let sql = format!(
        "SELECT t.sort_key, t.person_id FROM person_tokens t WHERE t.org_id = $1 AND t.token >= $2 AND t.token < $3 \
         {keyset} ORDER BY t.sort_key, t.person_id LIMIT {limit_ph}"
    );
    let want = usize::try_from(limit).unwrap_or(0);
    let mut fetch = limit.saturating_mul(2).saturating_add(8);
    loop {
        let rows: Vec<(String, Uuid)> = run!(x, c => {
            let q = sqlx::query_as(&sql).bind(org.0).bind(word).bind(&hi);
            let q = if after.is_some() { q.bind(&sk).bind(id) } else { q };
            q.bind(fetch).fetch_all(c).await
        })?;
        let complete = (rows.len() as i64) < fetch;
        let mut out: Vec<(String, Uuid)> = Vec::with_capacity(want);
        for r in rows {
            if out.last().is_none_or(|l| l.1 != r.1) {
                out.push(r);
            }
        }
        if out.len() >= want || complete {
            out.truncate(want);
            return Ok(out);
        }
        fetch = fetch.saturating_mul(4);
    }
}

/// One page of people in name order after `(sort_key, id)`.
pub async fn page(
    x: &mut impl Exec,
    org: OrgId,
    f: &Filter,
    after: Option<&(String, Uuid)>,
    limit: i64,
) -> Result<Vec<(Person, String)>, StoreError> {
    #[derive(Clone)]
    enum Arg {
        Text(String),
        Bool(bool),
        Id(Uuid),
        Int(i64),
    }
    let mut args: Vec<Arg> = vec![];
    let next = |a: Arg, args: &mut Vec<Arg>| {
        args.push(a);
        format!("${}", args.len() + 1)
    };
    // A first query word drives the search from the token index: the prefix range of
    // `(org_id, token, sort_key, person_id)` yields (sort_key, person) pairs that are already
    // scoped and carry the sort key, so ordering and the page limit need no table access.
    let mut sql;
    let mut order = "p.sort_key, p.id";
    let mut words = f.words.iter();
    let others_filter = f.words.len() > 1
        || f.visible.is_some()
        || f.active.is_some()
        || f.unit_path.is_some()
        || f.group_key.is_some()
        || f.skill_key.is_some();
    if let (false, [word]) = (others_filter, f.words.as_slice()) {
        // One word, no filters: the page is the first matches of the token index.
        let matches = word_matches(x, org, word, after, limit).await?;
        if matches.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT {COLS} FROM (VALUES {}) m CROSS JOIN people p WHERE p.id = m.column1 AND p.org_id = $1",
            carebridge_store::id_values(2, matches.len())
        );
        let rows: Vec<PersonRow> = run!(x, c => {
            let mut q = sqlx::query_as(&sql).bind(org.0);
            for (_, id) in &matches {
                q = q.bind(*id);
            }
            q.fetch_all(c).await
        })?;
        let mut by_id = std::collections::HashMap::with_capacity(rows.len());
        for r in rows {
            let p = person(r)?;
            by_id.insert(p.id, p);
        }
        let mut people = Vec::with_capacity(matches.len());
        let mut keys = Vec::with_capacity(matches.len());
        for (sk, id) in matches {
            if let Some(p) = by_id.remove(&id) {
                people.push(p);
                keys.push(sk);
            }
        }
        attach(x, org, &mut people).await?;
        return Ok(people.into_iter().zip(keys).collect());
    }
    if let Some(w) = words.next() {
        let lo = next(Arg::Text(w.clone()), &mut args);
        let hi = next(
            Arg::Text(carebridge_domain::search::prefix_upper(w)),
            &mut args,
        );
        let mut inner = format!(
            "SELECT DISTINCT t.sort_key AS sk, t.person_id AS pid FROM person_tokens t WHERE t.org_id = $1 AND t.token >= {lo} AND t.token < {hi}"
        );
        if let Some((sk, id)) = after {
            let a = next(Arg::Text(sk.clone()), &mut args);
            let b = next(Arg::Id(*id), &mut args);
            inner +=
                &format!(" AND (t.sort_key > {a} OR (t.sort_key = {a} AND t.person_id > {b}))");
        }
        if !others_filter {
            let l = next(Arg::Int(limit), &mut args);
            inner += &format!(" ORDER BY t.sort_key, t.person_id LIMIT {l}");
        }
        sql = format!(
            "SELECT {COLS}, p.sort_key FROM ({inner}) m CROSS JOIN people p WHERE p.id = m.pid AND p.org_id = $1"
        );
        // CROSS JOIN keeps SQLite from walking all people and probing the match list; the
        // order is the inner one (sort key, id), which equals the people's.
        order = "m.sk, m.pid";
    } else {
        sql = format!("SELECT {COLS}, p.sort_key FROM people p WHERE p.org_id = $1");
        if let Some((sk, id)) = after {
            let a = next(Arg::Text(sk.clone()), &mut args);
            let b = next(Arg::Id(*id), &mut args);
            sql += &format!(" AND (p.sort_key > {a} OR (p.sort_key = {a} AND p.id > {b}))");
        }
    }
    for w in words {
        // A token starting with `w` is " w" inside the person's search text.
        let ph = next(
            Arg::Text(format!("% {}%", carebridge_store::like_escape(w))),
            &mut args,
        );
        sql += &format!(" AND p.search LIKE {ph} ESCAPE '\\'");
    }
    if let Some(a) = f.active {
        sql += &format!(" AND p.active = {}", next(Arg::Bool(a), &mut args));
    }
    if let Some(v) = &f.visible {
        // Inside the query, so pages, limits and cursors only ever see visible people.
        let (clause, ids) = visible_sql(v, args.len() + 2);
        args.extend(ids.into_iter().map(Arg::Id));
        sql += &format!(" AND {clause}");
    }
    if let Some(path) = &f.unit_path {
        let ph = next(Arg::Text(format!("{path}%")), &mut args);
        sql += &format!(
            " AND EXISTS (SELECT 1 FROM person_units pu JOIN units u ON u.id = pu.unit_id WHERE pu.person_id = p.id AND pu.org_id = $1 AND u.path LIKE {ph})"
        );
    }
    for (kind, key) in [("group", &f.group_key), ("skill", &f.skill_key)] {
        if let Some(k) = key {
            let ph = next(Arg::Text(k.clone()), &mut args);
            sql += &format!(
                " AND EXISTS (SELECT 1 FROM person_labels pl JOIN labels l ON l.id = pl.label_id WHERE pl.person_id = p.id AND pl.org_id = $1 AND l.kind = '{kind}' AND l.name_key = {ph})"
            );
        }
    }
    let l = next(Arg::Int(limit), &mut args);
    sql += &format!(" ORDER BY {order} LIMIT {l}");
    type Row = (
        Uuid,
        String,
        String,
        String,
        Option<String>,
        Option<String>,
        String,
        String,
        String,
        bool,
        i64,
        i64,
        i64,
        String,
    );
    let rows: Vec<Row> = run!(x, c => {
        let mut q = sqlx::query_as(&sql).bind(org.0);
        for a in &args {
            q = match a {
                Arg::Text(s) => q.bind(s.clone()),
                Arg::Bool(b) => q.bind(*b),
                Arg::Id(u) => q.bind(*u),
                Arg::Int(i) => q.bind(*i),
            };
        }
        q.fetch_all(c).await
    })?;
    let mut people = Vec::with_capacity(rows.len());
    let mut keys = Vec::with_capacity(rows.len());
    for r in rows {
        keys.push(r.13.clone());
        people.push(person((
            r.0, r.1, r.2, r.3, r.4, r.5, r.6, r.7, r.8, r.9, r.10, r.11, r.12,
        ))?);
    }
    attach(x, org, &mut people).await?;
    Ok(people.into_iter().zip(keys).collect())
}

/// Deletes a person (tokens, memberships and roles go with it).
pub async fn delete(tx: &mut Tx, org: OrgId, id: PersonId) -> Result<bool, StoreError> {
    drop_tokens(tx, org, &[id.0]).await?;
    let n = exec!(tx, c => sqlx::query("DELETE FROM people WHERE org_id = $1 AND id = $2").bind(org.0).bind(id.0).execute(c).await)?;
    Ok(n == 1)
}

pub async fn external_id_taken(
    x: &mut impl Exec,
    org: OrgId,
    external_id: &str,
    except: Option<Uuid>,
) -> Result<bool, StoreError> {
    let n: i64 = run!(x, c => sqlx::query_scalar("SELECT COUNT(*) FROM people WHERE org_id = $1 AND external_id = $2 AND id <> $3")
        .bind(org.0).bind(external_id).bind(except.unwrap_or(Uuid::nil())).fetch_one(c).await)?;
    Ok(n > 0)
}

/// Links a person to a sign-in account.
pub async fn set_account(
    tx: &mut Tx,
    org: OrgId,
    id: Uuid,
    account: Uuid,
) -> Result<(), StoreError> {
    exec!(tx, c => sqlx::query("UPDATE people SET account_id = $3 WHERE org_id = $1 AND id = $2")
        .bind(org.0).bind(id).bind(account).execute(c).await)?;
    Ok(())
}

// ---- bulk (import) --------------------------------------------------------------------------

/// Every person of `org` with their units, groups and skills (in name order), for an import's
/// matching. Three independent reads (people, unit links, label links) run at once, each on its
/// own read connection: they see the latest commit, which is what the caller's transaction
/// sees before it writes (on SQLite the caller holds the only writer; on PostgreSQL its
/// transaction reads committed data too, and updates check each person's version). The link
/// rows are read as ids and named from the (few) units and labels, so the database neither
/// joins nor sorts 100k-row results.
pub async fn all(db: &carebridge_store::Db, org: OrgId) -> Result<Vec<Person>, StoreError> {
    let sql = format!("SELECT {COLS} FROM people p WHERE p.org_id = $1");
    let people = async {
        let mut c = db.read().await?;
        let rows: Vec<PersonRow> =
            run!(&mut c, c => sqlx::query_as(&sql).bind(org.0).fetch_all(c).await)?;
        Ok::<_, StoreError>(rows)
    };
    let units = async {
        let mut c = db.read().await?;
        let names: Vec<(Uuid, String)> = run!(&mut c, c => sqlx::query_as(
            "SELECT id, name FROM units WHERE org_id = $1")
            .bind(org.0).fetch_all(c).await)?;
        let links: Vec<(Uuid, Uuid)> = run!(&mut c, c => sqlx::query_as(
            "SELECT person_id, unit_id FROM person_units WHERE org_id = $1")
            .bind(org.0).fetch_all(c).await)?;
        Ok::<_, StoreError>((names, links))
    };
    let labels = async {
        let mut c = db.read().await?;
        let names: Vec<(Uuid, String, String, String)> = run!(&mut c, c => sqlx::query_as(
            "SELECT id, kind, name, name_key FROM labels WHERE org_id = $1")
            .bind(org.0).fetch_all(c).await)?;
        let links: Vec<(Uuid, Uuid)> = run!(&mut c, c => sqlx::query_as(
            "SELECT person_id, label_id FROM person_labels WHERE org_id = $1")
            .bind(org.0).fetch_all(c).await)?;
        Ok::<_, StoreError>((names, links))
    };
    let (rows, (unit_names, unit_links), (label_names, label_links)) =
        tokio::try_join!(people, units, labels)?;
    let mut people = rows
        .into_iter()
        .map(person)
        .collect::<Result<Vec<_>, _>>()?;
    // In id order, as before (deactivations and their audit events follow it).
    people.sort_unstable_by_key(|p| p.id);
    let index: HashMap<Uuid, usize> = people.iter().enumerate().map(|(i, p)| (p.id, i)).collect();
    let unit_names: HashMap<Uuid, String> = unit_names.into_iter().collect();
    for (pid, id) in unit_links {
        if let (Some(&i), Some(name)) = (index.get(&pid), unit_names.get(&id)) {
            people[i].units.push(UnitRef {
                id,
                name: name.clone(),
            });
        }
    }
    let label_names: HashMap<Uuid, (String, String, String)> = label_names
        .into_iter()
        .map(|(id, kind, name, key)| (id, (kind, name, key)))
        .collect();
    for p in &mut people {
        p.units
            .sort_by(|a, b| (&a.name, a.id).cmp(&(&b.name, b.id)));
    }
    // (person, is a group, name key, name) of every label link, sorted: each person's groups
    // and skills in name order.
    let mut keyed: Vec<(usize, bool, &str, &str)> = label_links
        .iter()
        .filter_map(|(pid, id)| {
            let (kind, name, key) = label_names.get(id)?;
            Some((
                *index.get(pid)?,
                kind == "group",
                key.as_str(),
                name.as_str(),
            ))
        })
        .collect();
    keyed.sort_unstable();
    for (i, group, _, name) in keyed {
        let p = &mut people[i];
        if group {
            p.groups.push(name.to_string());
        } else {
            p.skills.push(name.to_string());
        }
    }
    Ok(people)
}

/// Labels of the organisation: `(id, kind, name_key)`.
pub async fn all_labels(
    x: &mut impl Exec,
    org: OrgId,
) -> Result<Vec<(Uuid, String, String)>, StoreError> {
    Ok(
        run!(x, c => sqlx::query_as("SELECT id, kind, name_key FROM labels WHERE org_id = $1")
        .bind(org.0).fetch_all(c).await)?,
    )
}

/// Creates labels `(id, kind, name)` in one statement.
pub async fn insert_labels(
    tx: &mut Tx,
    org: OrgId,
    labels: &[(Uuid, &str, &str)],
    now_ms: i64,
) -> Result<(), StoreError> {
    use carebridge_store::bulk::{Col, Rows, insert};
    let mut rows = Rows::new();
    for (id, kind, name) in labels {
        rows.uuid(*id)
            .uuid(org.0)
            .text(kind)
            .text(name)
            .text(&carebridge_domain::search::fold(name))
            .int(now_ms)
            .end();
    }
    insert(
        tx,
        "labels",
        &[
            ("id", Col::Uuid),
            ("org_id", Col::Uuid),
            ("kind", Col::Text),
            ("name", Col::Text),
            ("name_key", Col::Text),
            ("created_at", Col::Int),
        ],
        rows,
        "",
    )
    .await?;
    Ok(())
}

/// A person with their derived rows, for [`ManyRows::new`] (which takes them apart).
pub struct Links {
    pub person: Person,
    pub sort_key: String,
    pub tokens: Vec<String>,
    pub units: Vec<Uuid>,
    pub labels: Vec<Uuid>,
}

const PERSON_COLS: &[(&str, carebridge_store::bulk::Col)] = {
    use carebridge_store::bulk::Col;
    &[
        ("id", Col::Uuid),
        ("kind", Col::Text),
        ("given_name", Col::Text),
        ("family_name", Col::Text),
        ("sort_key", Col::Text),
        ("external_id", Col::Text),
        ("language", Col::Text),
        ("emails", Col::Text),
        ("phones", Col::Text),
        ("address", Col::Text),
        ("active", Col::Bool),
        ("version", Col::Int),
        ("updated_at", Col::Int),
        ("change_seq", Col::Int),
        ("search", Col::Text),
    ]
};

/// The cells of [`PERSON_COLS`], the person's strings moved in.
fn person_cells(
    rows: &mut carebridge_store::bulk::Rows,
    p: Person,
    sort_key: String,
    search: String,
    seq: i64,
) {
    rows.uuid(p.id)
        .text_owned(p.kind)
        .text_owned(p.given_name)
        .text_owned(p.family_name)
        .text_owned(sort_key)
        .opt_text_owned(p.external_id)
        .opt_text_owned(p.language)
        .text_owned(to_json(&p.emails))
        .text_owned(to_json(&p.phones))
        .text_owned(to_json(&p.address))
        .bool(p.active)
        .int(p.version)
        .int(p.updated_at.as_millisecond())
        .int(seq)
        .text_owned(search);
}

/// The rows of a [`write_many`], built ahead (pure CPU work, which a bulk writer can do while
/// the previous rows are being written).
#[derive(Default)]
pub struct ManyRows {
    created: carebridge_store::bulk::Rows,
    updated: carebridge_store::bulk::Rows,
    /// The updated people, in the order of `updated`.
    updated_ids: Vec<Uuid>,
    tokens: carebridge_store::bulk::Rows,
    units: carebridge_store::bulk::Rows,
    labels: carebridge_store::bulk::Rows,
    /// The units and labels the link rows name, each once.
    unit_ids: Vec<Uuid>,
    label_ids: Vec<Uuid>,
}

impl ManyRows {
    /// New people (`created`) and changed ones (`updated`, each with the version it was read
    /// at), marked changed at `seq` (see `repo::feed`), with their derived rows.
    pub fn new(org: OrgId, seq: i64, created: Vec<Links>, updated: Vec<(Links, i64)>) -> Self {
        use carebridge_store::bulk::Rows;
        let count = |f: fn(&Links) -> usize| {
            created.iter().map(f).sum::<usize>() + updated.iter().map(|(l, _)| f(l)).sum::<usize>()
        };
        let mut r = ManyRows {
            created: Rows::with_capacity(created.len(), PERSON_COLS.len() + 3),
            updated: Rows::with_capacity(updated.len(), PERSON_COLS.len() + 1),
            units: Rows::with_capacity(count(|l| l.units.len()), 3),
            labels: Rows::with_capacity(count(|l| l.labels.len()), 3),
            ..ManyRows::default()
        };
        // Tokens in key order: consecutive inserts land on the same B-tree pages.
        let mut keys: Vec<(String, String, Uuid)> = Vec::with_capacity(count(|l| l.tokens.len()));
        let (mut unit_ids, mut label_ids) = (
            std::collections::BTreeSet::new(),
            std::collections::BTreeSet::new(),
        );
        // The derived rows of one person; the person's own cells are left to the caller.
        let mut derived = |l: Links, r: &mut ManyRows| -> (Person, String, String) {
            let id = l.person.id;
            let search = carebridge_domain::search::search_text(&l.tokens);
            for t in l.tokens {
                keys.push((t, l.sort_key.clone(), id));
            }
            for u in l.units {
                unit_ids.insert(u);
                r.units.uuid(id).uuid(u).uuid(org.0).end();
            }
            for x in l.labels {
                label_ids.insert(x);
                r.labels.uuid(id).uuid(x).uuid(org.0).end();
            }
            (l.person, l.sort_key, search)
        };
        for l in created {
            let (p, sort_key, search) = derived(l, &mut r);
            let (org_id, created_at) = (org.0, p.created_at.as_millisecond());
            person_cells(&mut r.created, p, sort_key, search, seq);
            r.created.uuid(org_id).int(created_at).int(seq).end();
        }
        for (l, expected) in updated {
            let (p, sort_key, search) = derived(l, &mut r);
            r.updated_ids.push(p.id);
            person_cells(&mut r.updated, p, sort_key, search, seq);
            r.updated.int(expected).end();
        }
        keys.sort_unstable();
        let mut tokens = Rows::with_capacity(keys.len(), 4);
        for (t, sort_key, id) in keys {
            tokens
                .uuid(org.0)
                .text_owned(t)
                .text_owned(sort_key)
                .uuid(id)
                .end();
        }
        r.tokens = tokens;
        r.unit_ids = unit_ids.into_iter().collect();
        r.label_ids = label_ids.into_iter().collect();
        r
    }

    /// The updated people.
    pub fn updated_ids(&self) -> &[Uuid] {
        &self.updated_ids
    }
}

/// Inserts new people and overwrites changed ones, then replaces the derived rows (tokens,
/// units, labels) of both, in a few set statements (see [`ManyRows::new`]). Returns false when
/// an updated person changed since it was read.
pub async fn write_many(tx: &mut Tx, org: OrgId, rows: ManyRows) -> Result<bool, StoreError> {
    use carebridge_store::bulk::{self, Col};
    let ids = &rows.updated_ids;
    if !ids.is_empty() {
        // Their token rows are found from the stored sort key and tokens, overwritten next.
        drop_tokens(tx, org, ids).await?;
        let n = bulk::update(
            tx,
            "people",
            org.0,
            PERSON_COLS,
            Some(("version", Col::Int)),
            rows.updated,
        )
        .await?;
        if n != ids.len() as u64 {
            return Ok(false);
        }
        for table in ["person_units", "person_labels"] {
            bulk::delete_in(tx, table, org.0, "person_id", ids).await?;
        }
    }
    // Every key of the rows inserted below is sure, so the database need not check each row's
    // keys again: new people name the organisation (checked and locked here) and no account;
    // link rows name a person written just above (inserted, or updated and so locked) and a
    // unit or label checked and locked here. On PostgreSQL that saves a trigger call and a
    // parent lookup per key and row (a tenth of the server's work for the people alone); on
    // SQLite a bulk transaction (`Db::begin_bulk`) has no foreign-key checks at all, so in
    // one these checks are the only ones.
    if !rows.created.is_empty() {
        bulk::lock_organisation(tx, org.0).await?;
    }
    bulk::lock_parents(tx, "units", org.0, &rows.unit_ids).await?;
    bulk::lock_parents(tx, "labels", org.0, &rows.label_ids).await?;
    let off = bulk::fk_triggers_off(tx).await?;
    if !rows.created.is_empty() {
        let mut cols = PERSON_COLS.to_vec();
        cols.push(("org_id", Col::Uuid));
        cols.push(("created_at", Col::Int));
        cols.push(("created_seq", Col::Int));
        bulk::insert(tx, "people", &cols, rows.created, "").await?;
    }
    bulk::insert(
        tx,
        "person_tokens",
        &[
            ("org_id", Col::Uuid),
            ("token", Col::Text),
            ("sort_key", Col::Text),
            ("person_id", Col::Uuid),
        ],
        rows.tokens,
        "",
    )
    .await?;
    let link = |col: &'static str| {
        [
            ("person_id", Col::Uuid),
            (col, Col::Uuid),
            ("org_id", Col::Uuid),
        ]
    };
    bulk::insert(tx, "person_units", &link("unit_id"), rows.units, "").await?;
    bulk::insert(tx, "person_labels", &link("label_id"), rows.labels, "").await?;
    bulk::fk_triggers_on(tx, off).await?;
    Ok(true)
}

// ---- export (GDPR) --------------------------------------------------------------------------

/// The person's sign-in account: `(login, phone, has password, authenticator app, created)`.
pub async fn account_of(
    x: &mut impl Exec,
    org: OrgId,
    person: Uuid,
) -> Result<Option<(String, Option<String>, bool, bool, i64)>, StoreError> {
    Ok(run!(x, c => sqlx::query_as(
        "SELECT a.login, a.phone, a.password_hash IS NOT NULL, a.totp_confirmed_at IS NOT NULL, a.created_at \
         FROM people p JOIN accounts a ON a.id = p.account_id WHERE p.org_id = $1 AND p.id = $2")
        .bind(org.0).bind(person).fetch_optional(c).await)?)
}

/// The person's duty assignments, oldest first:
/// `(duty, title, starts, ends, role, status, note)`.
pub async fn assignments_of(
    x: &mut impl Exec,
    org: OrgId,
    person: Uuid,
) -> Result<Vec<(Uuid, String, i64, i64, String, String, Option<String>)>, StoreError> {
    Ok(run!(x, c => sqlx::query_as(
        "SELECT d.id, d.title, d.starts_at, d.ends_at, a.role, a.status, a.note FROM assignments a \
         JOIN duties d ON d.id = a.duty_id WHERE a.org_id = $1 AND d.org_id = $1 AND a.person_id = $2 \
         ORDER BY a.starts_at, d.id")
        .bind(org.0).bind(person).fetch_all(c).await)?)
}

/// Audit entries whose target is the person: `(seq, at, action, actor, source)`. Reads the
/// organisation's log (no index on the target): an export is a rare, deliberate act.
pub async fn history_of(
    x: &mut impl Exec,
    org: OrgId,
    person: Uuid,
) -> Result<Vec<(i64, i64, String, String, String)>, StoreError> {
    Ok(run!(x, c => sqlx::query_as(
        "SELECT seq, at, action, actor, source FROM audit_events \
         WHERE org_id = $1 AND target_type = 'person' AND target_id = $2 ORDER BY seq")
        .bind(org.0).bind(person.to_string()).fetch_all(c).await)?)
}

// ---- erasure (GDPR) -------------------------------------------------------------------------
// A person's sign-in rows live in identity's tables but hang off the person (and their
// account); removing a person must remove them, or the foreign keys refuse the delete.

/// The person's account id.
pub async fn account_id(
    x: &mut impl Exec,
    org: OrgId,
    person: Uuid,
) -> Result<Option<Uuid>, StoreError> {
    let v: Option<Option<Uuid>> = run!(x, c => sqlx::query_scalar(
        "SELECT account_id FROM people WHERE org_id = $1 AND id = $2")
        .bind(org.0).bind(person).fetch_optional(c).await)?;
    Ok(v.flatten())
}

/// Removes the person's authorization codes, token grants (their tokens stop working at
/// once: every use checks the grant), consents and device-flow approvals.
pub async fn detach_identity(tx: &mut Tx, org: OrgId, person: Uuid) -> Result<(), StoreError> {
    for table in ["auth_codes", "token_grants", "consents", "device_codes"] {
        let sql = format!("DELETE FROM {table} WHERE org_id = $1 AND person_id = $2");
        exec!(tx, c => sqlx::query(&sql).bind(org.0).bind(person).execute(c).await)?;
    }
    Ok(())
}

/// Deletes a sign-in account and everything hanging off it, when no person (of any
/// organisation) uses it any more. Returns whether it was deleted.
pub async fn erase_account_if_unused(tx: &mut Tx, account: Uuid) -> Result<bool, StoreError> {
    let users: i64 = run!(tx, c => sqlx::query_scalar("SELECT COUNT(*) FROM people WHERE account_id = $1")
        .bind(account).fetch_one(c).await)?;
    if users > 0 {
        return Ok(false);
    }
    for sql in [
        "DELETE FROM otp_challenges WHERE session_id IN (SELECT id FROM sessions WHERE account_id = $1)",
        "DELETE FROM auth_codes WHERE session_id IN (SELECT id FROM sessions WHERE account_id = $1)",
        "DELETE FROM sessions WHERE account_id = $1",
        "DELETE FROM recovery_codes WHERE account_id = $1",
        "DELETE FROM action_links WHERE account_id = $1",
        "DELETE FROM accounts WHERE id = $1",
    ] {
        exec!(tx, c => sqlx::query(sql).bind(account).execute(c).await)?;
    }
    Ok(true)
}

/// The account's login and phone (to find messages sent to them).
pub async fn account_addresses(
    x: &mut impl Exec,
    account: Uuid,
) -> Result<Vec<String>, StoreError> {
    let r: Option<(String, Option<String>)> = run!(x, c => sqlx::query_as(
        "SELECT login, phone FROM accounts WHERE id = $1").bind(account).fetch_optional(c).await)?;
    Ok(r.map(|(l, p)| std::iter::once(l).chain(p).collect())
        .unwrap_or_default())
}

/// Deletes outbox messages to these addresses sent for this organisation (or for no
/// organisation, i.e. the account's own mail such as reset links).
pub async fn erase_messages(
    tx: &mut Tx,
    org: OrgId,
    addresses: &[String],
) -> Result<u64, StoreError> {
    let mut n = 0;
    for a in addresses {
        n += exec!(tx, c => sqlx::query(
            "DELETE FROM outbox WHERE recipient = $1 AND (org_id = $2 OR org_id IS NULL)")
            .bind(a).bind(org.0).execute(c).await)?;
    }
    Ok(n)
}
