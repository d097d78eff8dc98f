//! `weir user create|list|delete`, `weir token create|list|revoke` and
//! `weir acl add|list|remove`: users, bearer tokens and ACLs through the HTTP API
//! (`/v1/users`, `/v1/tokens`, `/v1/acls`). A new user's password is read from stdin (one
//! line), never from the command line. A server started without `--auth` refuses every
//! change (`auth_disabled`); the CLI says so and how to start it instead.

use std::io::BufRead;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand, ValueEnum};
use serde::Deserialize;
use serde_json::{Value, json};

use super::client::{ApiFailure, Client};
use super::output::{print, table};

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user; the password is read from stdin (one line)
    Create {
        /// User name
        name: String,
        /// What the user may do
        #[arg(long, value_enum)]
        role: RoleArg,
    },
    /// List users
    List,
    /// Delete a user with its tokens and ACLs
    Delete {
        /// User name
        name: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RoleArg {
    /// Everything: topics, processors, functions, SQL statements, users, tokens, ACLs
    Admin,
    /// A reader that may also produce
    Writer,
    /// List, describe, consume, groups, state look-ups, queries
    Reader,
}

impl RoleArg {
    fn as_str(self) -> &'static str {
        match self {
            RoleArg::Admin => "admin",
            RoleArg::Writer => "writer",
            RoleArg::Reader => "reader",
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a bearer token and print it (shown this once)
    Create {
        /// A name for the token (default: its id)
        name: Option<String>,
        /// Create it for another user (admins only)
        #[arg(long = "for", value_name = "USER")]
        for_user: Option<String>,
    },
    /// List tokens (yours; admins see everyone's)
    List,
    /// Revoke a token by id or name
    Revoke {
        /// Token id or name (not `token`: that is the global --token's id)
        #[arg(value_name = "ID")]
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum AclCommand {
    /// Allow a user on topics or groups whose names start with a prefix. A user with any
    /// topic (group) ACL may use only the topics (groups) its ACLs allow
    Add(AclAddArgs),
    /// List ACLs
    List {
        /// Only this user's
        #[arg(long)]
        user: Option<String>,
    },
    /// Remove an ACL by id
    Remove {
        /// ACL id (from `weir acl list`)
        id: u64,
    },
}

#[derive(Debug, Args)]
pub struct AclAddArgs {
    /// The user the ACL is for
    #[arg(long)]
    pub user: String,
    /// Topics whose names start with this prefix
    #[arg(long, value_name = "PREFIX", conflicts_with = "group_prefix")]
    pub topic_prefix: Option<String>,
    /// Consumer groups whose names start with this prefix
    #[arg(long, value_name = "PREFIX")]
    pub group_prefix: Option<String>,
    /// What the ACL allows: read (describe, consume, groups) or write (describe, produce)
    #[arg(long, value_enum)]
    pub allow: AllowArg,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AllowArg {
    Read,
    Write,
}

#[derive(Deserialize)]
struct UserRow {
    name: String,
    role: String,
}

#[derive(Deserialize)]
struct TokenRow {
    id: String,
    name: String,
    user: String,
}

#[derive(Deserialize)]
struct AclRow {
    id: u64,
    user: String,
    resource: String,
    prefix: String,
    allow: String,
}

/// Reads one line (the password) from stdin, without its line end.
fn read_password() -> Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("cannot read the password from stdin")?;
    let password = line.trim_end_matches(['\n', '\r']).to_string();
    if password.is_empty() {
        bail!(
            "no password on stdin (give it as one line, e.g. `weir user create NAME --role reader < file`)"
        );
    }
    Ok(password)
}

/// The server's `auth_disabled` refusal, said for the command line; other errors as they are.
fn explain(e: anyhow::Error) -> anyhow::Error {
    match e.downcast_ref::<ApiFailure>() {
        Some(f) if f.code == "auth_disabled" => anyhow::anyhow!(
            "the server runs without --auth, so it does not accept users, tokens or ACLs \
             (anyone could create an admin before authentication is turned on). \
             Restart it with `weir serve --auth` (at the first start, WEIR_ADMIN_PASSWORD creates \
             the user 'admin'), then run this command again with --user admin"
        ),
        _ => e,
    }
}

pub async fn run_user(client: &Client, command: UserCommand) -> Result<()> {
    user_command(client, command).await.map_err(explain)
}

pub async fn run_token(client: &Client, command: TokenCommand) -> Result<()> {
    token_command(client, command).await.map_err(explain)
}

pub async fn run_acl(client: &Client, command: AclCommand) -> Result<()> {
    acl_command(client, command).await.map_err(explain)
}

async fn user_command(client: &Client, command: UserCommand) -> Result<()> {
    match command {
        UserCommand::Create { name, role } => {
            let password = read_password()?;
            let body = json!({ "name": name, "password": password, "role": role.as_str() });
            let _: Value = client
                .json(client.post(&["v1", "users"]).json(&body))
                .await?;
            print(&format!("created user {name} ({})\n", role.as_str()))?;
        }
        UserCommand::List => {
            #[derive(Deserialize)]
            struct List {
                users: Vec<UserRow>,
            }
            let list: List = client.json(client.get(&["v1", "users"])).await?;
            let rows: Vec<Vec<String>> = list
                .users
                .into_iter()
                .map(|u| vec![u.name, u.role])
                .collect();
            print(&table(&["NAME", "ROLE"], &rows))?;
        }
        UserCommand::Delete { name } => {
            client.send(client.delete(&["v1", "users", &name])).await?;
            print(&format!("deleted user {name}\n"))?;
        }
    }
    Ok(())
}

async fn token_command(client: &Client, command: TokenCommand) -> Result<()> {
    match command {
        TokenCommand::Create { name, for_user } => {
            let body = json!({ "name": name, "user": for_user });
            #[derive(Deserialize)]
            struct Created {
                token: String,
            }
            let created: Created = client
                .json(client.post(&["v1", "tokens"]).json(&body))
                .await?;
            print(&format!("{}\n", created.token))?;
        }
        TokenCommand::List => {
            #[derive(Deserialize)]
            struct List {
                tokens: Vec<TokenRow>,
            }
            let list: List = client.json(client.get(&["v1", "tokens"])).await?;
            let rows: Vec<Vec<String>> = list
                .tokens
                .into_iter()
                .map(|t| vec![t.id, t.name, t.user])
                .collect();
            print(&table(&["ID", "NAME", "USER"], &rows))?;
        }
        TokenCommand::Revoke { id } => {
            client.send(client.delete(&["v1", "tokens", &id])).await?;
            print(&format!("revoked token {id}\n"))?;
        }
    }
    Ok(())
}

async fn acl_command(client: &Client, command: AclCommand) -> Result<()> {
    match command {
        AclCommand::Add(args) => {
            let (resource, prefix) = match (&args.topic_prefix, &args.group_prefix) {
                (Some(p), None) => ("topic", p.clone()),
                (None, Some(p)) => ("group", p.clone()),
                _ => bail!("give exactly one of --topic-prefix and --group-prefix"),
            };
            let allow = match args.allow {
                AllowArg::Read => "read",
                AllowArg::Write => "write",
            };
            let body = json!({
                "user": args.user, "resource": resource, "prefix": prefix, "allow": allow
            });
            let acl: AclRow = client
                .json(client.post(&["v1", "acls"]).json(&body))
                .await?;
            print(&format!(
                "added ACL {}: {} may {} {}s starting with '{}'\n",
                acl.id, acl.user, acl.allow, acl.resource, acl.prefix
            ))?;
        }
        AclCommand::List { user } => {
            #[derive(Deserialize)]
            struct List {
                acls: Vec<AclRow>,
            }
            let query: Vec<(&str, String)> = user.map(|u| ("user", u)).into_iter().collect();
            let list: List = client
                .json(client.get_query(&["v1", "acls"], &query))
                .await?;
            let rows: Vec<Vec<String>> = list
                .acls
                .into_iter()
                .map(|a| vec![a.id.to_string(), a.user, a.resource, a.prefix, a.allow])
                .collect();
            print(&table(
                &["ID", "USER", "RESOURCE", "PREFIX", "ALLOW"],
                &rows,
            ))?;
        }
        AclCommand::Remove { id } => {
            client
                .send(client.delete(&["v1", "acls", &id.to_string()]))
                .await?;
            print(&format!("removed ACL {id}\n"))?;
        }
    }
    Ok(())
}
