//! `carebridge`: the server binary and its operator commands. Parses the command line, loads
//! the configuration, and calls into the library.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use carebridge_domain::{Clock, SystemClock};
use carebridge_proto::org::CreateOrg;
use carebridge_server::config::Config;
use carebridge_server::{commands, open_db};
use clap::{Parser, Subcommand};

/// mimalloc instead of glibc's allocator: bulk paths (an import builds and drops millions of
/// small strings, handed between the reader thread and the writer) spent more than half their
/// time in glibc's `malloc`/`free` bookkeeping.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "carebridge",
    version,
    about = "Carebridge: identity, directory, duties and secure chat for care and rescue organisations"
)]
struct Cli {
    /// Configuration file (TOML). Default: ./carebridge.toml if it exists.
    #[arg(long, global = true, env = "CAREBRIDGE_CONFIG")]
    config: Option<PathBuf>,
    /// Database URL: sqlite://path (embedded, default sqlite://data/carebridge.db) or postgres://…
    #[arg(long, global = true)]
    database_url: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (default).
    Serve {
        /// Address to listen on, e.g. 127.0.0.1:8080 or 0.0.0.0:443.
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// Comma-separated roles to run (identity, backend, directory, duties, portal, notify);
        /// default all.
        #[arg(long, value_delimiter = ',')]
        roles: Option<Vec<String>>,
        /// The identity provider whose tokens the portal accepts (when identity runs elsewhere).
        #[arg(long)]
        identity_issuer: Option<String>,
        /// Load the demo organisation if it is missing.
        #[arg(long)]
        demo: bool,
        /// `text` or `json` logs.
        #[arg(long)]
        log_format: Option<String>,
        /// TLS certificate chain (PEM); with --tls-key serves HTTPS directly.
        #[arg(long)]
        tls_cert: Option<PathBuf>,
        #[arg(long)]
        tls_key: Option<PathBuf>,
    },
    /// Apply database migrations and exit.
    Migrate,
    /// Load the demo organisation into the database.
    Demo,
    /// Organisations.
    Org {
        #[command(subcommand)]
        cmd: OrgCmd,
    },
    /// Administrators (person + account with password + org_admin role).
    Admin {
        #[command(subcommand)]
        cmd: AdminCmd,
    },
    /// API keys (shown once, stored hashed).
    Apikey {
        #[command(subcommand)]
        cmd: ApikeyCmd,
    },
    /// The audit log.
    Audit {
        #[command(subcommand)]
        cmd: AuditCmd,
    },
    /// OAuth clients (apps and integrations that get tokens).
    Client {
        #[command(subcommand)]
        cmd: ClientCmd,
    },
    /// The e-mail/SMS outbox: what was sent, what waits, what the development sink holds.
    Outbox {
        #[command(subcommand)]
        cmd: OutboxCmd,
    },
    /// Token signing keys.
    Keys {
        #[command(subcommand)]
        cmd: KeysCmd,
    },
    /// Duties: list, create, assign people.
    Duties {
        #[command(subcommand)]
        cmd: DutiesCmd,
    },
    /// The customer portal: the ERP feed from CSV files, and its OpenAPI contract.
    Portal {
        #[command(subcommand)]
        cmd: PortalCmd,
    },
    /// Import people from a CSV or XLSX file: match by external key or e-mail, create, update,
    /// optionally deactivate who is missing; all or nothing unless --skip-bad-rows.
    Import {
        /// The organisation (slug or id).
        #[arg(long)]
        org: String,
        /// The file (CSV in UTF-8, UTF-16 with BOM or Windows-1252; or XLSX).
        file: PathBuf,
        /// Report what would happen, write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Apply the good rows and report the bad ones.
        #[arg(long)]
        skip_bad_rows: bool,
        /// Create units named in the file that do not exist yet.
        #[arg(long)]
        create_units: bool,
        /// auto (external key, else e-mail), external_id or email.
        #[arg(long = "match", default_value = "auto")]
        match_by: String,
        /// Full sync: deactivate active people under this unit path who are not in the file.
        #[arg(long)]
        deactivate_missing: Option<String>,
        /// XLSX: the sheet to read (default: the first).
        #[arg(long)]
        sheet: Option<String>,
        /// Column mapping `Header=field` (repeatable), e.g. --map "Rufname=given_name".
        #[arg(long)]
        map: Vec<String>,
        /// Print the report as JSON (the upload endpoint's format).
        #[arg(long)]
        json: bool,
    },
    /// Consistent copy of the embedded SQLite database, safe while the server runs.
    Backup { file: PathBuf },
    /// Benchmark the real server (see `carebridge bench --help`).
    Bench(carebridge_server::bench::BenchArgs),
}

#[derive(Subcommand)]
enum ClientCmd {
    /// Register a client; prints the secret of a confidential client once.
    Create {
        #[arg(long)]
        org: String,
        #[arg(long)]
        name: String,
        /// Grant types, e.g. `client_credentials` or `authorization_code,refresh_token`.
        #[arg(long, value_delimiter = ',', required = true)]
        grants: Vec<String>,
        /// Allowed scopes, e.g. `directory:read,duties:read`.
        #[arg(long, value_delimiter = ',')]
        scopes: Vec<String>,
        /// Exact redirect URIs.
        #[arg(long = "redirect-uri")]
        redirect_uris: Vec<String>,
        /// A public client (no secret; browser or mobile app).
        #[arg(long)]
        public: bool,
        /// A first-party app (no consent page).
        #[arg(long)]
        first_party: bool,
    },
}

#[derive(Subcommand)]
enum OutboxCmd {
    /// The newest messages, with their bodies (sign-in codes and links: treat the output as
    /// secret; sent messages have their body erased).
    List {
        #[arg(long, default_value_t = 20)]
        limit: i64,
    },
}

#[derive(Subcommand)]
enum PortalCmd {
    /// Upsert clients, appointments or links from a CSV file (header row with the JSON feed's
    /// field names); checks every row first and writes all or nothing.
    Import {
        /// The organisation's id (the `org` claim of its tokens).
        #[arg(long)]
        org: uuid::Uuid,
        /// `clients`, `appointments` or `links`.
        #[arg(long)]
        kind: String,
        file: PathBuf,
    },
    /// Print the `portal/v1` OpenAPI contract.
    Openapi,
}

#[derive(Subcommand)]
enum KeysCmd {
    /// Retire the signing key and start signing with a new one; the old key stays in the JWKS
    /// until every token it signed has expired.
    Rotate,
}

#[derive(Subcommand)]
enum DutiesCmd {
    /// Duties overlapping a time range (default: the coming week).
    List {
        #[arg(long)]
        org: String,
        /// RFC 3339, e.g. 2026-12-01T00:00:00Z.
        #[arg(long)]
        from: Option<String>,
        #[arg(long)]
        to: Option<String>,
    },
    /// Create a duty; positions as `name:count`.
    Create {
        #[arg(long)]
        org: String,
        /// Unit id.
        #[arg(long)]
        unit: uuid::Uuid,
        #[arg(long)]
        title: String,
        /// RFC 3339 or a local time (2026-12-01T08:00) in --time-zone.
        #[arg(long)]
        start: String,
        #[arg(long)]
        end: String,
        #[arg(long, default_value = "UTC")]
        time_zone: String,
        #[arg(long)]
        location: Option<String>,
        /// Needed positions, e.g. `Sanitäter:2,Fahrer:1`.
        #[arg(long, value_delimiter = ',')]
        positions: Vec<String>,
    },
    /// Put a person on a duty ("save assignment").
    Assign {
        #[arg(long)]
        org: String,
        #[arg(long)]
        duty: uuid::Uuid,
        #[arg(long)]
        person: uuid::Uuid,
        #[arg(long)]
        position: Option<uuid::Uuid>,
        /// `lead` or `helper`.
        #[arg(long, default_value = "helper")]
        role: String,
        /// Assign although the person lacks the position's qualification (audited).
        #[arg(long)]
        override_qualification: bool,
        /// Switch the duty's chat on or off.
        #[arg(long)]
        chat: Option<bool>,
    },
}

#[derive(Subcommand)]
enum OrgCmd {
    Create {
        #[arg(long)]
        slug: String,
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "CH")]
        region: String,
        #[arg(long, default_value = "de")]
        language: String,
        #[arg(long)]
        contact_email: Option<String>,
    },
    /// Show the app settings that discovery publishes, or replace them with a JSON file
    /// (`--set settings.json`; the same document as `PUT /api/v1/orgs/{org}/app-settings`).
    Settings {
        #[arg(long)]
        org: String,
        #[arg(long)]
        set: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum AdminCmd {
    /// Create an organisation administrator. The password is read from CAREBRIDGE_ADMIN_PASSWORD
    /// or standard input (never from the command line, where it would land in shell history).
    Create {
        #[arg(long)]
        org: String,
        #[arg(long)]
        given_name: String,
        #[arg(long)]
        family_name: String,
        #[arg(long)]
        email: String,
    },
}

#[derive(Subcommand)]
enum ApikeyCmd {
    /// Create a key; prints the secret once.
    Create {
        /// Organisation slug or id; omit with --platform.
        #[arg(long, required_unless_present = "platform")]
        org: Option<String>,
        /// A platform key (may create organisations).
        #[arg(long, conflicts_with = "org")]
        platform: bool,
        #[arg(long)]
        name: String,
        /// Permissions (default: all of an org admin, or `platform`).
        #[arg(long, value_delimiter = ',')]
        permissions: Vec<String>,
    },
    Revoke {
        #[arg(long)]
        org: String,
        id: uuid::Uuid,
    },
}

#[derive(Subcommand)]
enum AuditCmd {
    /// Check the hash chain of one organisation (or all); exits 1 when tampering is found.
    Verify {
        #[arg(long)]
        org: Option<String>,
    },
}

fn read_password() -> anyhow::Result<String> {
    if let Ok(p) = std::env::var("CAREBRIDGE_ADMIN_PASSWORD") {
        return Ok(p);
    }
    eprintln!("password (12+ characters), then Enter:");
    let mut s = String::new();
    std::io::stdin()
        .read_line(&mut s)
        .context("reading the password")?;
    Ok(s.trim_end_matches(['\r', '\n']).to_string())
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<std::process::ExitCode> {
    let cli = Cli::parse();
    let mut config = Config::load(cli.config.as_deref()).context("reading the configuration")?;
    if let Some(u) = cli.database_url {
        config.database_url = u;
    }
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let command = cli.command.unwrap_or(Command::Serve {
        listen: None,
        roles: None,
        identity_issuer: None,
        demo: false,
        log_format: None,
        tls_cert: None,
        tls_key: None,
    });
    match command {
        Command::Serve {
            listen,
            roles,
            identity_issuer,
            demo,
            log_format,
            tls_cert,
            tls_key,
        } => {
            if let Some(l) = listen {
                config.listen = l;
            }
            if let Some(r) = roles {
                config.roles = r;
            }
            if identity_issuer.is_some() {
                config.identity_issuer = identity_issuer;
            }
            if let Some(f) = log_format {
                config.log_format = f;
            }
            config.demo |= demo;
            if tls_cert.is_some() {
                config.tls_cert = tls_cert;
            }
            if tls_key.is_some() {
                config.tls_key = tls_key;
            }
            config.validate().map_err(anyhow::Error::msg)?;
            carebridge_server::telemetry::init_logs(&config.log_format, &config.log_level);
            let tls = config.tls();
            let public = config.public_url.clone();
            let running = carebridge_server::start(config, clock).await?;
            let base = public.unwrap_or_else(|| {
                format!("{}://{}", if tls { "https" } else { "http" }, running.addr)
            });
            println!("listening on {base}");
            if let Some(t) = &running.setup_token {
                println!(
                    "\nNo organisation exists yet. Open this one-time link to create the first organisation and its administrator:\n\n    {base}/setup?token={t}\n"
                );
            }
            if let Some(k) = &running.demo_key {
                println!(
                    "\nDemo organisation 'demo' loaded. Its admin API key (shown once):\n\n    {k}\n\nTry: curl -H 'Authorization: Bearer {k}' '{base}/api/v1/orgs/demo/people?q=mül'\n"
                );
            }
            running
                .run_until(carebridge_server::shutdown_signal())
                .await?;
        }
        Command::Migrate => {
            open_db(&config, None).await?;
            println!("migrations applied");
        }
        Command::Import {
            org,
            file,
            dry_run,
            skip_bad_rows,
            create_units,
            match_by,
            deactivate_missing,
            sheet,
            map,
            json,
        } => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let match_by = match match_by.as_str() {
                "auto" => carebridge_proto::directory::ImportMatch::Auto,
                "external_id" => carebridge_proto::directory::ImportMatch::ExternalId,
                "email" => carebridge_proto::directory::ImportMatch::Email,
                other => anyhow::bail!("--match must be auto, external_id or email, not '{other}'"),
            };
            let options = carebridge_proto::directory::ImportOptions {
                dry_run,
                skip_bad_rows,
                create_units,
                match_by,
                deactivate_missing,
                sheet,
                map: (!map.is_empty()).then(|| map.join(";")),
                ..Default::default()
            };
            let db = open_db(&config, None).await?;
            let report =
                commands::import_people(&db, &org, bytes, options, !json, clock.now()).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", commands::describe_import(&report));
            }
            if !(report.dry_run || report.applied) {
                return Ok(std::process::ExitCode::from(1));
            }
        }
        Command::Demo => {
            let db = open_db(&config, None).await?;
            match carebridge_server::demo::ensure(&db, clock.now()).await? {
                Some(k) => println!("demo organisation created; admin API key (shown once): {k}"),
                None => println!("demo organisation exists already"),
            }
        }
        Command::Org {
            cmd:
                OrgCmd::Create {
                    slug,
                    name,
                    region,
                    language,
                    contact_email,
                },
        } => {
            let db = open_db(&config, None).await?;
            let o = commands::org_create(
                &db,
                CreateOrg {
                    slug,
                    name,
                    default_region: region,
                    default_language: language,
                    contact_email,
                },
                clock.now(),
            )
            .await?;
            println!("created organisation {} ({})", o.slug, o.id);
        }
        Command::Org {
            cmd: OrgCmd::Settings { org, set },
        } => {
            let db = open_db(&config, None).await?;
            let json = match set {
                Some(path) => {
                    let text = std::fs::read_to_string(&path)
                        .with_context(|| format!("reading {}", path.display()))?;
                    commands::app_settings_set(&db, &org, &text, clock.now()).await?
                }
                None => commands::app_settings_get(&db, &org).await?,
            };
            println!("{}", serde_json::to_string_pretty(&json)?);
        }
        Command::Admin {
            cmd:
                AdminCmd::Create {
                    org,
                    given_name,
                    family_name,
                    email,
                },
        } => {
            let db = open_db(&config, None).await?;
            let pw = read_password()?;
            let id = commands::admin_create(
                &db,
                &org,
                &given_name,
                &family_name,
                &email,
                pw,
                clock.now(),
            )
            .await?;
            println!("created administrator {id}");
        }
        Command::Apikey {
            cmd:
                ApikeyCmd::Create {
                    org,
                    platform,
                    name,
                    permissions,
                },
        } => {
            let db = open_db(&config, None).await?;
            let org = if platform { None } else { org };
            let k = commands::apikey_create(&db, org.as_deref(), &name, permissions, clock.now())
                .await?;
            println!(
                "key {} ({}); secret, shown once:\n{}",
                k.key.id,
                k.key.permissions.join(","),
                k.secret
            );
        }
        Command::Apikey {
            cmd: ApikeyCmd::Revoke { org, id },
        } => {
            let db = open_db(&config, None).await?;
            commands::apikey_revoke(&db, &org, id, clock.now()).await?;
            println!("revoked {id}");
        }
        Command::Audit {
            cmd: AuditCmd::Verify { org },
        } => {
            let db = open_db(&config, None).await?;
            if !commands::audit_verify(&db, org.as_deref()).await? {
                return Ok(std::process::ExitCode::FAILURE);
            }
        }
        Command::Client {
            cmd:
                ClientCmd::Create {
                    org,
                    name,
                    grants,
                    scopes,
                    redirect_uris,
                    public,
                    first_party,
                },
        } => {
            let db = open_db(&config, None).await?;
            let c = commands::client_create(
                &db,
                &org,
                carebridge_proto::identity::CreateOAuthClient {
                    name,
                    public,
                    redirect_uris,
                    scopes,
                    grants,
                    first_party,
                },
                clock.now(),
            )
            .await?;
            println!("client_id: {}", c.client.client_id);
            if let Some(secret) = c.client_secret {
                println!("client_secret, shown once:\n{secret}");
            }
        }
        Command::Outbox {
            cmd: OutboxCmd::List { limit },
        } => {
            let db = open_db(&config, None).await?;
            for m in carebridge_notify::list(&db, limit.clamp(1, 1000)).await? {
                println!(
                    "#{} {} {} to {} [{}; {} attempt(s){}]",
                    m.seq,
                    m.channel,
                    m.purpose,
                    m.recipient,
                    m.state,
                    m.attempts,
                    m.last_error
                        .map(|e| format!("; last error: {e}"))
                        .unwrap_or_default()
                );
                if !m.body.is_empty() {
                    for line in m.body.lines() {
                        println!("    {line}");
                    }
                }
            }
        }
        Command::Portal {
            cmd: PortalCmd::Openapi,
        } => {
            println!(
                "{}",
                serde_json::to_string_pretty(&carebridge_portal::http::openapi())?
            );
        }
        Command::Portal {
            cmd: PortalCmd::Import { org, kind, file },
        } => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let db = open_db(&config, None).await?;
            match commands::portal_import(&db, org, &kind, &bytes, clock.now()).await {
                Ok(r) => println!(
                    "created {}, updated {}, unchanged {}",
                    r.created, r.updated, r.unchanged
                ),
                Err(e) => {
                    eprintln!("{}: {e}", file.display());
                    return Ok(std::process::ExitCode::from(1));
                }
            }
        }
        Command::Keys {
            cmd: KeysCmd::Rotate,
        } => {
            let db = open_db(&config, None).await?;
            let kid = carebridge_identity::keys::rotate(&db, clock.now()).await?;
            println!(
                "signing with the new key {kid}; the previous key stays published for an hour"
            );
        }
        Command::Duties { cmd } => {
            let db = open_db(&config, None).await?;
            match cmd {
                DutiesCmd::List { org, from, to } => {
                    for d in commands::duties_list(&db, &org, from, to, clock.now()).await? {
                        println!(
                            "{}  {} – {}  {:<9} {}/{} people  {}",
                            d.id,
                            d.starts_local,
                            d.ends_local,
                            d.state,
                            d.confirmed,
                            d.positions.iter().map(|p| p.needed).sum::<i64>(),
                            d.title
                        );
                    }
                }
                DutiesCmd::Create {
                    org,
                    unit,
                    title,
                    start,
                    end,
                    time_zone,
                    location,
                    positions,
                } => {
                    let mut list = Vec::new();
                    for p in positions {
                        let (name, count) = match p.rsplit_once(':') {
                            Some((n, c)) => (
                                n.to_string(),
                                c.parse().map_err(|_| {
                                    anyhow::anyhow!(
                                        "position '{p}': the count after ':' must be a number"
                                    )
                                })?,
                            ),
                            None => (p.clone(), 1),
                        };
                        list.push(carebridge_proto::duties::PositionInput {
                            id: None,
                            name,
                            needed: count,
                            qualification_id: None,
                        });
                    }
                    let d = commands::duty_create(
                        &db,
                        &org,
                        carebridge_proto::duties::CreateDuty {
                            unit_id: unit,
                            title,
                            location,
                            description: None,
                            starts_at: start,
                            ends_at: end,
                            time_zone: Some(time_zone),
                            positions: list,
                            chat: false,
                        },
                        clock.now(),
                    )
                    .await?;
                    println!(
                        "duty {} created ({} – {})",
                        d.id, d.starts_local, d.ends_local
                    );
                    for p in d.positions {
                        println!("  position {} {} × {}", p.id, p.name, p.needed);
                    }
                }
                DutiesCmd::Assign {
                    org,
                    duty,
                    person,
                    position,
                    role,
                    override_qualification,
                    chat,
                } => {
                    let a = commands::duty_assign(
                        &db,
                        &org,
                        duty,
                        carebridge_proto::duties::CreateAssignment {
                            person_id: person,
                            position_id: position,
                            role: Some(role),
                            override_qualification,
                            note: None,
                            chat,
                        },
                        clock.now(),
                    )
                    .await?;
                    println!("assignment {} ({}, {})", a.id, a.role, a.status);
                }
            }
        }
        Command::Backup { file } => {
            let db = open_db(&config, None).await?;
            commands::backup(&db, &file).await?;
            println!("backup written to {}", file.display());
        }
        Command::Bench(args) => {
            carebridge_server::bench::run(args, config).await?;
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}
