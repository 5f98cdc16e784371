//! The command line's arguments (clap), and Erlang's own flags read as
//! ours.

use clap::{Args, Parser, Subcommand};
use cpg_node::config::PortRange;

/// A hidden Erlang node in Rust that takes part in cpg process groups.
///
/// Erlang's own flags work too: `-sname N`, `-name N` (long names) and
/// `-setcookie C` are read as `--sname N`, `--name N --long-names` and
/// `--cookie C`.
#[derive(Parser, Debug)]
#[command(version, about)]
pub struct Cli {
    #[command(flatten)]
    pub node: NodeArgs,
    #[command(subcommand)]
    pub cmd: Cmd,
}

/// Options shared by every subcommand: the node this process runs (for a
/// one-shot command, the hidden node that asks the cluster).
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Node options (this process's own hidden node)")]
pub struct NodeArgs {
    /// Node name: `name` (this host is added) or `name@host`; a short name
    /// unless --long-names (`-name N` sets both) or the host is an IP
    /// address (`name@127.0.0.1`: a long name).
    #[arg(long, global = true, conflicts_with = "sname")]
    pub name: Option<String>,
    /// Short node name, as `erl -sname`: `name` or `name@host`.
    #[arg(long, global = true, conflicts_with = "long_names")]
    pub sname: Option<String>,
    /// Cluster cookie, as `erl -setcookie` (default: $HOME/.erlang.cookie,
    /// or $XDG_CONFIG_HOME/erlang/.erlang.cookie where that is missing, as
    /// erl reads them; created as erl creates it when neither exists).
    #[arg(long, global = true, env = "CPG_NODE_COOKIE", hide_env_values = true)]
    pub cookie: Option<String>,
    /// Use long names (name@fully.qualified.host).
    #[arg(long, global = true)]
    pub long_names: bool,
    /// net_ticktime in seconds.
    #[arg(long, global = true, default_value_t = 60)]
    pub net_ticktime: u64,
    /// Distribution port to listen on: `MIN-MAX` takes the first free one,
    /// as erl's inet_dist_listen_min/max (e.g. for a firewall), or `PORT`;
    /// default: any free port.
    #[arg(long, global = true, value_name = "MIN-MAX")]
    pub dist_port_range: Option<PortRange>,
    /// Read coalescing: while a peer streams messages to us one way, wait
    /// this many microseconds (rounded up to the runtime's 1 ms timer tick)
    /// between reads of its connection, so that it is not woken up per
    /// message; 0 reads at once (lowest latency under load). Default 100.
    #[arg(long, global = true, value_name = "MICROSECONDS")]
    pub read_hold_us: Option<u64>,
    /// Address to listen on for distribution connections, as erl's
    /// `inet_dist_use_interface` (e.g. 10.0.0.5, or 127.0.0.1 for this host
    /// only); default: every address, IPv4 and IPv6.
    #[arg(long, global = true, value_name = "IP")]
    pub dist_listen_addr: Option<std::net::IpAddr>,
    /// EPMD-less distribution, as `erl -start_epmd false -erl_epmd_port
    /// PORT`: every node of the cluster listens on this one port, so peers
    /// are dialled at it with no EPMD asked, and this node registers with
    /// none. `run` listens on it (unless --dist-port-range says otherwise);
    /// the one-shot commands on any port. An empty ERL_DIST_PORT is unset.
    #[arg(long, global = true, value_name = "PORT", env = "ERL_DIST_PORT")]
    pub erl_epmd_port: Option<String>,
    /// `run`: where no EPMD answers, start Erlang's `epmd -daemon` (as
    /// `erl` does; `-start_epmd false` works too, before or after `run`):
    /// it outlives this node, so the nodes that register with it stay
    /// findable when this one stops or restarts. Without `epmd` installed,
    /// or with `false`, the node runs an EPMD inside its own process
    /// instead. The one-shot commands never start one.
    #[arg(long, global = true, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub start_epmd: bool,
}

/// What to do.
#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Run the node until SIGINT/SIGTERM.
    Run {
        /// Seed nodes: connected at start and redialled whenever lost, for
        /// as long as the node runs (repeatable).
        #[arg(long)]
        connect: Vec<String>,
        /// Connect only to discovered nodes whose name matches this pattern
        /// (`*` any run of characters, `?` one; repeatable).
        #[arg(long)]
        only: Vec<String>,
        /// How often to ask the seeds for the cluster's nodes, other
        /// cpg-node instances included (ms); 0 turns discovery off.
        #[arg(long, default_value_t = 10_000)]
        discover_interval_ms: u64,
        /// Start an echo process registered under this name (repeatable).
        #[arg(long)]
        register: Vec<String>,
        /// Join an echo process to this group in every scope (repeat a
        /// group to join it several times; patterns such as "a/*" allowed).
        #[arg(long)]
        join: Vec<String>,
        // The flattened groups last: each sets its own help heading, which
        // clap keeps for the fields after it.
        #[command(flatten)]
        cpg: CpgArgs,
        #[command(flatten)]
        pg: PgRunArgs,
    },
    /// Print the members of a group as the cluster's cpg scopes see them.
    Members {
        /// The group name (a pattern group is found as cpg finds it).
        group: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Print every group with its members.
    Groups {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Print the groups, then stream join/leave events until stopped;
    /// nodes that join the cluster later are followed too.
    Watch {
        /// How often to ask the seeds for the cluster's nodes (ms).
        #[arg(long, default_value_t = 10_000)]
        discover_interval_ms: u64,
        /// Last: its cpg options set their own help heading.
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Ask a running cpg-node for its status (peers and their traffic,
    /// scopes, cluster targets), as the node itself answers it.
    Status {
        /// The node (`cpg-node run` serves its status as `cpg_node_status`).
        node: String,
        /// One JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Ping a node: prints pong (exit 0) or pang (exit 1, and why on
    /// stderr).
    Ping {
        /// The node.
        node: String,
    },
    /// A local demo: starts what it needs on loopback, shows the node at work.
    Demo,
    /// Print the members of an OTP pg group (`pg:get_members/2`) as the
    /// cluster's pg scopes see them.
    PgMembers {
        /// The group, as an Erlang term: `my_group` (an atom), '"s"' (a
        /// string), '{a,1}' (a tuple); text that is no term is an atom.
        group: String,
        #[command(flatten)]
        client: PgClientArgs,
    },
    /// Print every OTP pg group with its members.
    PgGroups {
        #[command(flatten)]
        client: PgClientArgs,
    },
    /// Print the OTP pg groups, then stream joins and leaves until stopped.
    PgWatch {
        #[command(flatten)]
        client: PgClientArgs,
    },
    /// Phoenix.PubSub (PG2 adapter): subscribe to topics or broadcast.
    Pubsub {
        #[command(subcommand)]
        cmd: PubsubCmd,
    },
}

/// What to do with a Phoenix.PubSub instance.
#[derive(Subcommand, Debug)]
pub enum PubsubCmd {
    /// Print every broadcast to these topics (all topics when none) until
    /// stopped: `TOPIC MESSAGE` lines, or JSON objects with --json.
    Subscribe {
        /// Topics (binaries on the Elixir side).
        topics: Vec<String>,
        #[command(flatten)]
        args: PubsubArgs,
    },
    /// `Phoenix.PubSub.broadcast(PubSub, TOPIC, TERM)`: TERM is Erlang
    /// syntax (`hello`, '{new_msg, <<"hi">>}').
    Broadcast {
        /// The topic.
        topic: String,
        /// The message, as an Erlang term.
        term: String,
        #[command(flatten)]
        args: PubsubArgs,
    },
}

/// Options of the `pubsub` commands.
#[derive(Args, Debug, Clone)]
pub struct PubsubArgs {
    /// The PubSub instance's name, as in Elixir (`MyApp.PubSub`).
    #[arg(long)]
    pub pubsub: String,
    /// Nodes to connect to (the nodes they are connected to are joined
    /// too); `subscribe` keeps them connected while it runs.
    #[arg(long, required = true)]
    pub connect: Vec<String>,
    /// The instance's pool size (default: as many groups as the nodes
    /// have, at least 1).
    #[arg(long)]
    pub pool_size: Option<usize>,
    /// Group naming: `current` (2.0 and 2.1.1 onwards), `2.1.0`
    /// (`Adapter_1`, ...), or `auto`: 2.1.0's when the nodes have
    /// `Adapter_1` (which only 2.1.0 makes).
    #[arg(long, default_value = "auto", value_parser = ["auto", "current", "2.1.0"])]
    pub naming: String,
    /// One JSON object per line.
    #[arg(long)]
    pub json: bool,
}

/// OTP pg options of `run`.
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "OTP pg options")]
pub struct PgRunArgs {
    /// Take part in this OTP pg scope (repeatable; `pg` when --pg-join is
    /// given without it).
    #[arg(long = "pg-scope")]
    pub pg_scopes: Vec<String>,
    /// Join an echo process to this pg group in every pg scope, read as an
    /// Erlang term (`my_group`, '"s"', '{a,1}'); repeat it to join twice.
    #[arg(long = "pg-join")]
    pub pg_join: Vec<String>,
}

/// Options of the commands that read the cluster's OTP pg groups.
#[derive(Args, Debug, Clone)]
pub struct PgClientArgs {
    /// The pg scope (repeatable; default `pg`).
    #[arg(long = "pg-scope")]
    pub pg_scopes: Vec<String>,
    /// Nodes to ask (the nodes they are connected to are asked too).
    #[arg(long, required = true)]
    pub connect: Vec<String>,
    /// One JSON object per line.
    #[arg(long)]
    pub json: bool,
}

/// Options of the commands that read the cluster's groups.
#[derive(Args, Debug, Clone)]
pub struct ClientArgs {
    /// Nodes to ask.
    #[arg(long, required = true)]
    pub connect: Vec<String>,
    /// One JSON object per line.
    #[arg(long)]
    pub json: bool,
    /// Last: it sets its own help heading.
    #[command(flatten)]
    pub cpg: CpgArgs,
}

/// cpg options: the scopes this process's node runs (for a one-shot
/// command, the replica it reads the cluster's groups from).
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "cpg scope options (this node's replica of the scopes)")]
pub struct CpgArgs {
    /// cpg scope to take part in (repeatable; default cpg_default_scope).
    #[arg(long = "scope")]
    pub scopes: Vec<String>,
    /// node_type of the BEAM cpg scopes: `auto` (each BEAM node asked when
    /// it connects, and treated as it answers), `all` (the Rust node is a
    /// full peer) or `visible` (cpg's default: publish by casts, poll for
    /// state).
    #[arg(long, default_value = "auto", value_parser = ["auto", "all", "visible"])]
    pub beam_node_type: String,
    /// How often to ask each BEAM scope at `visible` for its state, and
    /// under `auto` each other BEAM node its node_type again (ms).
    #[arg(long, default_value_t = 5000)]
    pub poll_interval_ms: u64,
    /// Most copies each scope holds in all (a pid joined twice counts
    /// twice): a join past it fails, a cast from another node past it is
    /// logged and ignored. Raise it for a cluster with more memberships.
    #[arg(long, default_value_t = cpg_node::cpg::scope::DEFAULT_MAX_TOTAL_COPIES, value_name = "N", value_parser = at_least_one)]
    pub max_total_copies: usize,
}

impl Cli {
    /// Whether errors are to be printed as JSON.
    pub fn json(&self) -> bool {
        match &self.cmd {
            Cmd::Members { client, .. } | Cmd::Groups { client } | Cmd::Watch { client, .. } => {
                client.json
            }
            Cmd::Status { json, .. } => *json,
            Cmd::PgMembers { client, .. } | Cmd::PgGroups { client } | Cmd::PgWatch { client } => {
                client.json
            }
            Cmd::Pubsub {
                cmd: PubsubCmd::Subscribe { args, .. } | PubsubCmd::Broadcast { args, .. },
            } => args.json,
            _ => false,
        }
    }
}

impl Cmd {
    /// The log level when RUST_LOG is not set: `run` tells what it does,
    /// the other commands print their result and warnings only. For those,
    /// the node's own warnings about dials are left out: a failed connect
    /// comes back as the command's error, printed once.
    pub fn default_log(&self) -> &'static str {
        match self {
            Cmd::Run { .. } => "info",
            _ => "warn,cpg_node::node=error",
        }
    }
}

/// Rewrites Erlang's single-dash flags into the long flags clap knows:
/// `-sname N` to `--sname N`, `-name N` to `--name N --long-names`,
/// `-setcookie C` to `--cookie C`, `-start_epmd B` to `--start-epmd B`,
/// `-erl_epmd_port P` to `--erl-epmd-port P`.
/// Only whole arguments are rewritten, and none after `--`.
pub fn erlang_style_args(
    args: impl IntoIterator<Item = std::ffi::OsString>,
) -> Vec<std::ffi::OsString> {
    let mut out = Vec::new();
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        match a.to_str() {
            Some("--") => {
                out.push(a);
                out.extend(it.by_ref());
            }
            Some("-sname") => out.push("--sname".into()),
            Some("-setcookie") => out.push("--cookie".into()),
            Some("-start_epmd") => out.push("--start-epmd".into()),
            Some("-erl_epmd_port") => out.push("--erl-epmd-port".into()),
            Some("-name") => {
                out.push("--long-names".into());
                out.push("--name".into());
            }
            _ => out.push(a),
        }
    }
    out
}

/// A count of at least 1 (`--max-total-copies`: a scope holding no copy
/// could never be joined).
fn at_least_one(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}
