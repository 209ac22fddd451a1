//! `carebridge-member`: the member CLI. Sign in with the device flow, see my duties, read and
//! write duty chats end to end encrypted (MLS), send and fetch encrypted attachments. State
//! (tokens, device keys, chat history) lives in one file with mode 0600.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use carebridge_client::member::{Line, Lock, Session, login};
use carebridge_client::{ClientError, Content};
use clap::{Parser, Subcommand};
use uuid::Uuid;

#[derive(Parser)]
#[command(
    name = "carebridge-member",
    version,
    about = "Duties and end-to-end encrypted duty chats of a Carebridge member"
)]
struct Cli {
    /// The state file (default: $XDG_DATA_HOME/carebridge/member.json or
    /// ~/.local/share/carebridge/member.json).
    #[arg(long, env = "CAREBRIDGE_MEMBER_STATE", global = true)]
    state: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Sign in (approve in a browser) and register this computer as a chat device.
    Login {
        /// The Carebridge server, e.g. https://carebridge.example.org
        #[arg(long)]
        server: String,
        /// How this device is listed among your devices.
        #[arg(long, default_value = "carebridge-member")]
        name: String,
    },
    /// Remove this device, revoke the sign-in and delete the state file.
    Logout,
    /// My duties (upcoming; --from for older ones).
    Duties {
        /// RFC 3339 instant, e.g. 2026-01-01T00:00:00Z.
        #[arg(long)]
        from: Option<String>,
    },
    /// The chats this device can take part in.
    Chats,
    /// Read the chat of a duty (everything this device has read so far, and what is new).
    Read { duty: Uuid },
    /// Start over in the chat of a duty when this device's copy of it broke: the device is
    /// removed and added again (a member online commits that), then `read` goes on.
    Rejoin { duty: Uuid },
    /// Send a text message to the chat of a duty.
    Send { duty: Uuid, text: String },
    /// Encrypt a file and send it to the chat of a duty.
    Attach {
        duty: Uuid,
        file: PathBuf,
        /// Media type (default: guessed from the file name).
        #[arg(long)]
        mime: Option<String>,
    },
    /// Download and decrypt an attachment of a chat into a file.
    Download {
        duty: Uuid,
        attachment: Uuid,
        /// Where to write it (default: the sender's file name in the current directory).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Print new messages of all chats as they arrive (Ctrl-C ends).
    Follow,
}

fn default_state() -> anyhow::Result<PathBuf> {
    let base = match std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(std::env::var_os("HOME").context("HOME is not set: use --state")?)
            .join(".local/share"),
    };
    Ok(base.join("carebridge").join("member.json"))
}

fn guess_mime(path: &std::path::Path) -> &'static str {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    match ext.as_str() {
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "heic" => "image/heic",
        "pdf" => "application/pdf",
        "txt" => "text/plain",
        _ => "application/octet-stream",
    }
}

/// What a sender chose (text, file names) without control characters: no terminal escape
/// sequences from other people.
fn clean(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() && c != '\n' {
                '\u{FFFD}'
            } else {
                c
            }
        })
        .collect()
}

/// A file name for a sender-chosen attachment name: its last component, no leading dots,
/// no control or path characters; `attachment-<id>` when nothing usable is left.
fn safe_name(name: &str, id: Uuid) -> PathBuf {
    let last = name.rsplit(['/', '\\']).next().unwrap_or("");
    let cleaned: String = last
        .chars()
        .filter(|c| !c.is_control() && !matches!(c, ':' | '*' | '?' | '"' | '<' | '>' | '|'))
        .collect();
    let cleaned = cleaned.trim_start_matches('.').trim().to_string();
    if cleaned.is_empty() {
        PathBuf::from(format!("attachment-{id}"))
    } else {
        PathBuf::from(cleaned)
    }
}

/// One line of a chat: who (me, the person's name when known, else the device id's start).
fn print_line(me: Uuid, names: &HashMap<Uuid, String>, l: &Line) {
    let who = match l.sender {
        Some(s) if s == me => "me".to_string(),
        Some(s) => names
            .get(&s)
            .map(|n| clean(n))
            .unwrap_or_else(|| s.to_string().chars().take(8).collect()),
        None => "-".into(),
    };
    match &l.content {
        Content::Text { text } => println!("#{:<5} {who:<8}  {}", l.seq, clean(text)),
        Content::Attachment(a) => println!(
            "#{:<5} {who:<8}  [attachment {} \"{}\" {} {} bytes]",
            l.seq,
            a.id,
            clean(&a.name),
            clean(&a.mime),
            a.size
        ),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let path = match cli.state {
        Some(p) => p,
        None => default_state()?,
    };
    // One command at a time per state file (`follow` locks per step by itself).
    let _lock = match cli.cmd {
        Cmd::Follow => None,
        _ => Some(Lock::take(&path)?),
    };
    match cli.cmd {
        Cmd::Login { server, name } => {
            let s = login(
                &server,
                &name,
                |c| {
                    println!(
                        "Open {} and enter the code {}",
                        c.verification_uri, c.user_code
                    );
                    if let Some(u) = &c.verification_uri_complete {
                        println!("(or open {u})");
                    }
                    println!("Waiting for approval ({} s)…", c.expires_in);
                },
                tokio::time::sleep,
            )
            .await?;
            s.save(&path)?;
            println!(
                "Signed in; this device is {} (state in {})",
                s.device_id()?,
                path.display()
            );
        }
        Cmd::Logout => {
            Session::load(&path)?.logout(&path).await?;
            println!("Signed out; this device was removed.");
        }
        Cmd::Duties { from } => {
            let mut s = Session::load(&path)?;
            let duties = s.duties(from.as_deref()).await;
            s.save(&path)?;
            for d in duties? {
                println!(
                    "{}  {} – {}  {:<10} {}{}",
                    d.duty.id,
                    d.duty.starts_local,
                    d.duty.ends_local,
                    d.assignment.status,
                    d.duty.title,
                    if d.duty.chat { "  [chat]" } else { "" }
                );
            }
        }
        Cmd::Chats => {
            let s = Session::load(&path)?;
            for g in s.chats().await? {
                println!(
                    "{}  {:<9} {}",
                    g.duty_id,
                    g.phase,
                    if g.member { "member" } else { "not joined yet" }
                );
            }
        }
        Cmd::Read { duty } => {
            let mut s = Session::load(&path)?;
            let lines = s.read(duty).await;
            s.save(&path)?;
            let me = s.device_id()?;
            let lines = lines?;
            // Names are a nicety: without them (offline, removed) the device ids show.
            let names = s.names(duty).await.unwrap_or_default();
            for l in lines {
                print_line(me, &names, &l);
            }
        }
        Cmd::Rejoin { duty } => {
            let mut s = Session::load(&path)?;
            let r = s.rejoin(duty).await;
            s.save(&path)?;
            r?;
            println!("asked to rejoin: once a member's device is online, `read` goes on");
        }
        Cmd::Send { duty, text } => {
            let mut s = Session::load(&path)?;
            let sent = s.send_text(duty, &text).await;
            s.save(&path)?;
            println!("sent as #{}", sent?);
        }
        Cmd::Attach { duty, file, mime } => {
            let data =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let name = file
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "file".into());
            let mime = mime.unwrap_or_else(|| guess_mime(&file).to_string());
            let mut s = Session::load(&path)?;
            let sent = s.send_file(duty, &name, &mime, &data).await;
            s.save(&path)?;
            let a = sent?;
            println!("sent attachment {} ({} bytes)", a.id, a.size);
        }
        Cmd::Download {
            duty,
            attachment,
            out,
        } => {
            let s = Session::load(&path)?;
            let (a, data) = s.download(duty, attachment).await?;
            let out = out.unwrap_or_else(|| safe_name(&a.name, a.id));
            // Never overwrite: an existing file (or a link planted there) stops the download.
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&out)
                .with_context(|| format!("creating {} (it must not exist yet)", out.display()))?;
            std::io::Write::write_all(&mut f, &data)
                .with_context(|| format!("writing {}", out.display()))?;
            println!("wrote {} ({} bytes)", out.display(), a.size);
        }
        Cmd::Follow => {
            let mut s = Session::load(&path)?;
            let me = s.device_id()?;
            loop {
                // Who is in each chat, asked again on every (re)connect: a device added later
                // shows by its id until then.
                let mut names = HashMap::new();
                for g in s.chats().await.unwrap_or_default() {
                    names.extend(s.names(g.duty_id).await.unwrap_or_default());
                }
                match s
                    .follow(&path, |duty, l| {
                        print!("{duty}  ");
                        print_line(me, &names, l);
                    })
                    .await
                {
                    Ok(()) | Err(ClientError::Ws(_)) => {
                        eprintln!("connection closed; reconnecting in 5 s");
                        tokio::time::sleep(Duration::from_secs(5)).await;
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    //! The command line as a person types it: every command parses, and mistakes get clap's
    //! error instead of a run.

    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("carebridge-member").chain(args.iter().copied()))
    }

    const DUTY: &str = "0190a8e2-4f5b-7c3d-8e9f-0a1b2c3d4e5f";

    #[test]
    fn the_command_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_command_parses() {
        let duty: Uuid = DUTY.parse().unwrap();
        match parse(&["login", "--server", "https://cb.example.org"])
            .unwrap()
            .cmd
        {
            Cmd::Login { server, name } => {
                assert_eq!(server, "https://cb.example.org");
                assert_eq!(name, "carebridge-member");
            }
            _ => panic!("login"),
        }
        match parse(&["login", "--server", "http://x", "--name", "Laptop"])
            .unwrap()
            .cmd
        {
            Cmd::Login { name, .. } => assert_eq!(name, "Laptop"),
            _ => panic!("login --name"),
        }
        assert!(matches!(parse(&["logout"]).unwrap().cmd, Cmd::Logout));
        assert!(matches!(parse(&["chats"]).unwrap().cmd, Cmd::Chats));
        assert!(
            matches!(parse(&["rejoin", DUTY]).unwrap().cmd, Cmd::Rejoin { duty: d } if d == duty)
        );
        assert!(matches!(parse(&["follow"]).unwrap().cmd, Cmd::Follow));
        match parse(&["duties", "--from", "2026-01-01T00:00:00Z"])
            .unwrap()
            .cmd
        {
            Cmd::Duties { from } => assert_eq!(from.as_deref(), Some("2026-01-01T00:00:00Z")),
            _ => panic!("duties"),
        }
        assert!(matches!(parse(&["read", DUTY]).unwrap().cmd, Cmd::Read { duty: d } if d == duty));
        match parse(&["send", DUTY, "Treffpunkt Nordeingang"])
            .unwrap()
            .cmd
        {
            Cmd::Send { duty: d, text } => {
                assert_eq!(d, duty);
                assert_eq!(text, "Treffpunkt Nordeingang");
            }
            _ => panic!("send"),
        }
        match parse(&["attach", DUTY, "plan.pdf", "--mime", "application/pdf"])
            .unwrap()
            .cmd
        {
            Cmd::Attach { file, mime, .. } => {
                assert_eq!(file, PathBuf::from("plan.pdf"));
                assert_eq!(mime.as_deref(), Some("application/pdf"));
            }
            _ => panic!("attach"),
        }
        match parse(&["download", DUTY, DUTY, "--out", "/tmp/x"])
            .unwrap()
            .cmd
        {
            Cmd::Download {
                attachment, out, ..
            } => {
                assert_eq!(attachment, duty);
                assert_eq!(out, Some(PathBuf::from("/tmp/x")));
            }
            _ => panic!("download"),
        }
        // The state file option is global: before or after the command.
        let a = parse(&["--state", "/tmp/s.json", "chats"]).unwrap();
        let b = parse(&["chats", "--state", "/tmp/s.json"]).unwrap();
        assert_eq!(a.state, Some(PathBuf::from("/tmp/s.json")));
        assert_eq!(b.state, a.state);
    }

    #[test]
    fn mistakes_are_refused_by_the_parser() {
        use clap::error::ErrorKind;
        let kind = |args: &[&str]| parse(args).err().map(|e| e.kind());
        assert_eq!(
            kind(&[]),
            Some(ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand)
        );
        assert_eq!(kind(&["login"]), Some(ErrorKind::MissingRequiredArgument));
        assert_eq!(
            kind(&["read", "not-a-uuid"]),
            Some(ErrorKind::ValueValidation)
        );
        assert_eq!(
            kind(&["send", DUTY]),
            Some(ErrorKind::MissingRequiredArgument)
        );
        assert_eq!(
            kind(&["download", DUTY]),
            Some(ErrorKind::MissingRequiredArgument)
        );
        assert_eq!(kind(&["chat"]), Some(ErrorKind::InvalidSubcommand));
        assert_eq!(
            kind(&["chats", "--verbose"]),
            Some(ErrorKind::UnknownArgument)
        );
    }

    #[test]
    fn names_and_texts_from_others_are_made_safe() {
        let id: Uuid = DUTY.parse().unwrap();
        assert_eq!(safe_name("../../etc/passwd", id), PathBuf::from("passwd"));
        assert_eq!(
            safe_name("C:\\Users\\x\\plan.pdf", id),
            PathBuf::from("plan.pdf")
        );
        assert_eq!(safe_name("..hidden", id), PathBuf::from("hidden"));
        assert_eq!(safe_name("a<b>:c?.txt", id), PathBuf::from("abc.txt"));
        assert_eq!(
            safe_name("...", id),
            PathBuf::from(format!("attachment-{id}"))
        );
        assert_eq!(clean("ok\u{1b}[31mred\nnext"), "ok\u{FFFD}[31mred\nnext");
        assert_eq!(guess_mime(std::path::Path::new("Foto.JPG")), "image/jpeg");
        assert_eq!(
            guess_mime(std::path::Path::new("x")),
            "application/octet-stream"
        );
    }
}
