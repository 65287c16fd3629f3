//! One client connection: authenticated by its sluice token (as the password, or the answer to a
//! keyboard-interactive prompt) or a public key registered to its identity, with the target in
//! the user name (`agent+web1`); then each channel's request: an `exec` line read, decided, and
//! run on the target in sluice's own session, its output masked on the way back (a file transfer
//! passed as it is); the `sftp` subsystem (see `sftp`), a shell (see `shell`) and forwarding (see
//! `forward`), remote forwarding by rule. Other subsystems, environment variables, agent and X11
//! forwarding are refused.

use crate::SshListenerConfig;
use crate::output::LineMasker;
use crate::reply;
use crate::shell::{Terminal, run_shell};
use crate::target::SshTarget;
use crate::terminal::CastRecorder;
use crate::transfers;
use crate::upstream;
use bytes::Bytes;
use russh::server::{Auth, ChannelOpenHandle, Handle, Msg, PublicKeyOffer, Response, Session, VerifiedPublicKey};
use russh::{Channel, ChannelId, ChannelMsg, ChannelOpenFailure};
use sluice_core::exec::{ExecAction, ExecRequest};
use sluice_core::{ActionDetail, Decision, Protocol, Secret};
use sluice_gate::{
    Action, ClientInfo, Gate, OpenRequest, Outcome, Presented, SessionGate, SessionGrant, SessionLog, Standing,
};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::mpsc;

/// Exit status of a command sluice refused (denied, or waiting for a review): 126, the shell's
/// "found but cannot be run".
pub const REFUSED_STATUS: u32 = 126;

/// Pieces of a client's input queued for its command.
const INPUT_QUEUE: usize = 64;

/// What the client sends on a channel after its request.
pub(crate) enum Input {
    Data(Bytes),
    /// The client's terminal changed size (columns, rows).
    Resize {
        cols: u32,
        rows: u32,
    },
    Eof,
}

/// An authenticated client's session on its target, shared by the connection and its running
/// commands; the last of them to let go ends it.
pub(crate) struct Opened<S: SessionGate> {
    /// `None` only once ended.
    pub(crate) session: tokio::sync::Mutex<Option<S>>,
    pub(crate) log: S::Log,
    pub(crate) grant: SessionGrant,
    pub(crate) target: Arc<SshTarget>,
    /// The last command's number in the session's record.
    seq: AtomicU64,
}

/// What became of one command, for the record.
pub(crate) struct Run {
    seq: u64,
    started_at_us: i64,
    started: std::time::Instant,
    pub(crate) input_bytes: u64,
    pub(crate) output_bytes: u64,
}

impl Run {
    /// The next action of the session, starting now.
    pub(crate) fn start<S: SessionGate>(opened: &Opened<S>) -> Run {
        Run {
            seq: opened.seq.fetch_add(1, Ordering::Relaxed) + 1,
            started_at_us: sluice_core::audit::now_us(),
            started: std::time::Instant::now(),
            input_bytes: 0,
            output_bytes: 0,
        }
    }

    /// The action's number in the session's record.
    pub(crate) fn seq(&self) -> u64 {
        self.seq
    }

    pub(crate) fn finish<L: SessionLog>(
        &self,
        log: &L,
        line: &str,
        (verdict, rule): (&'static str, &str),
        exit_status: Option<u32>,
        error: Option<String>,
    ) {
        if !log.records_outcomes() {
            return;
        }
        log.finish(
            self.seq,
            Outcome {
                text: Arc::from(line),
                started_at_us: self.started_at_us,
                duration_us: i64::try_from(self.started.elapsed().as_micros()).unwrap_or(i64::MAX),
                decision: verdict,
                rule: Some(Arc::from(rule)),
                detail: ActionDetail::Exec {
                    exit_status,
                    input_bytes: self.input_bytes,
                    output_bytes: self.output_bytes,
                    error,
                },
            },
        );
    }
}

pub struct Connection<G: Gate> {
    gate: Arc<G>,
    config: Arc<SshListenerConfig>,
    peer: String,
    opened: Option<Arc<Opened<G::Session>>>,
    /// Where a running command's input goes.
    inputs: HashMap<ChannelId, mpsc::Sender<Input>>,
    /// Each open channel's way to the client, until its request takes it.
    writers: HashMap<ChannelId, ToClient>,
    /// The terminals asked for, by channel, until its shell is.
    terminals: HashMap<ChannelId, Terminal>,
    /// sluice's session on the target listening for the client (`ssh -R`), once asked for.
    listening: Option<Arc<upstream::Upstream>>,
    /// A login whose user name named no connection: the identity and its proof, until the client
    /// names one (`SetEnv SLUICE_TARGET=…`).
    named_later: Option<(String, Proof)>,
    /// Told once the client has authenticated.
    authenticated: tokio::sync::watch::Sender<bool>,
}

impl<G: Gate> Connection<G> {
    pub fn new(
        gate: Arc<G>,
        config: Arc<SshListenerConfig>,
        peer: String,
        authenticated: tokio::sync::watch::Sender<bool>,
    ) -> Self {
        Connection {
            gate,
            config,
            peer,
            opened: None,
            inputs: HashMap::new(),
            writers: HashMap::new(),
            terminals: HashMap::new(),
            listening: None,
            named_later: None,
            authenticated,
        }
    }

    /// Opens the session the user name asks for with what the client proved. A user name that
    /// names no connection (`agent`) waits for the client to name one with `SetEnv
    /// SLUICE_TARGET=…`: the proof is kept, and checked when it does (until then the client
    /// counts as not authenticated: its time to authenticate runs on).
    async fn authenticate(&mut self, user: &str, proof: Proof) -> Auth {
        match split_user(user) {
            Some((identity, target)) => match self.open(identity, &proof, target).await {
                true => Auth::Accept,
                false => Auth::reject(),
            },
            None if !user.is_empty() && !user.contains('+') => {
                self.named_later = Some((user.to_string(), proof));
                Auth::Accept
            }
            // Recorded like any attempt (no such connection).
            None => {
                self.open(user, &proof, "").await;
                Auth::reject()
            }
        }
    }

    /// Opens a session on `target`: `false` when the engine refused (it recorded why).
    async fn open(&mut self, identity: &str, proof: &Proof, target: &str) -> bool {
        let request = OpenRequest {
            presented: proof.presented(identity),
            target,
            client: ClientInfo { protocol: Protocol::Ssh, addr: &self.peer, tls: true, program: None },
        };
        let Ok((grant, mut session)) = self.gate.open(request).await else { return false };
        let Some(prepared) = grant.target.options::<Arc<SshTarget>>().cloned() else {
            session.end(format!("connection {target} is not an SSH connection"));
            return false;
        };
        session.started();
        let log = session.log();
        let session = tokio::sync::Mutex::new(Some(session));
        self.opened = Some(Arc::new(Opened { session, log, grant, target: prepared, seq: AtomicU64::new(0) }));
        self.authenticated.send_replace(true);
        true
    }

    /// `SetEnv SLUICE_TARGET=…` from a client whose user name named no connection: the session
    /// opens now, with the proof it gave at login.
    async fn open_named(&mut self, target: &str) -> bool {
        match (&self.opened, self.named_later.take()) {
            (Some(opened), _) => opened.grant.target.name == target,
            (None, Some((identity, proof))) => self.open(&identity, &proof, target).await,
            (None, None) => false,
        }
    }
}

impl<G: Gate> Drop for Connection<G> {
    fn drop(&mut self) {
        // A client that logged in without naming a connection and left without naming one: its
        // attempt is recorded all the same.
        if let (None, Some((identity, proof))) = (&self.opened, self.named_later.take()) {
            let (gate, peer) = (Arc::clone(&self.gate), self.peer.clone());
            tokio::spawn(async move {
                let presented = proof.presented(&identity);
                let client = ClientInfo { protocol: Protocol::Ssh, addr: &peer, tls: true, program: None };
                if let Ok((_, session)) = gate.open(OpenRequest { presented, target: "", client }).await {
                    session.end("the client named no connection".into());
                }
            });
        }
    }
}

impl<S: SessionGate> Drop for Opened<S> {
    fn drop(&mut self) {
        if let Some(session) = self.session.get_mut().take() {
            session.end("the client disconnected".into());
        }
    }
}

/// What a client proved at login.
enum Proof {
    /// Its sluice token (the password, or the answer to the keyboard-interactive prompt).
    Token(Secret),
    /// That it holds the private half of this public key (its `SHA256:` fingerprint).
    Key(String),
}

impl Proof {
    /// The proof as the engine takes it, for `identity`.
    fn presented<'a>(&'a self, identity: &'a str) -> Presented<'a> {
        match self {
            Proof::Token(secret) => Presented::Token { user: identity, secret },
            Proof::Key(fingerprint) => Presented::Key { user: identity, fingerprint },
        }
    }
}

/// The environment variable that names the connection when the user name does not
/// (`ssh -o SetEnv=SLUICE_TARGET=web1 agent@sluice`).
pub const TARGET_VARIABLE: &str = "SLUICE_TARGET";

/// The way to the client on one channel: writes wait for the client's window.
pub(crate) type ToClient = russh::ChannelWriteHalf<Msg>;

/// A channel's request taken: the session it runs in, where the client's input for it arrives,
/// and the way back to the client.
type Taken<S> = (Arc<Opened<S>>, mpsc::Receiver<Input>, ToClient);

impl<G: Gate> Connection<G> {
    /// Takes a channel's request (its first: a second one is refused, not run beside the first),
    /// with where the client's input for it will arrive.
    fn take_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<Option<Taken<G::Session>>, russh::Error> {
        if self.opened.is_none() && self.named_later.is_some() {
            session.channel_success(channel)?;
            let message = format!(
                "sluice: no connection named: log in as IDENTITY+CONNECTION (`ssh agent+web1@sluice`) or name it \
                 with `-o SetEnv={TARGET_VARIABLE}=web1`\n"
            );
            let handle = session.handle();
            tokio::spawn(refuse_now(handle, channel, message));
            return Ok(None);
        }
        let (Some(opened), Some(out)) = (self.opened.clone(), self.writers.remove(&channel)) else {
            session.channel_failure(channel)?;
            return Ok(None);
        };
        session.channel_success(channel)?;
        let (tx, rx) = mpsc::channel(INPUT_QUEUE);
        self.inputs.insert(channel, tx);
        Ok(Some((opened, rx, out)))
    }
}

/// `identity+target`: the target after the last `+`.
pub fn split_user(user: &str) -> Option<(&str, &str)> {
    let (identity, target) = user.rsplit_once('+')?;
    (!identity.is_empty() && !target.is_empty()).then_some((identity, target))
}

impl<G: Gate> russh::server::Handler for Connection<G> {
    type Error = russh::Error;

    async fn auth_password(&mut self, user: &str, password: &str) -> Result<Auth, Self::Error> {
        Ok(self.authenticate(user, Proof::Token(Secret::new(password))).await)
    }

    /// A key the client offers: one registered to no identity is refused before the client
    /// signs with it (not counted as an attempt, so a client with many keys still reaches the
    /// token prompt).
    async fn auth_publickey_offered(&mut self, _user: &str, offer: PublicKeyOffer<'_>) -> Result<Auth, Self::Error> {
        let fingerprint = offer.public_key.fingerprint(russh::keys::HashAlg::Sha256).to_string();
        Ok(match self.gate.key_usable(&fingerprint).await {
            true => Auth::Accept,
            false => Auth::reject(),
        })
    }

    /// Called once the client has signed with the key (russh checks the signature): a key
    /// registered to the identity (`sluice identity add-key`) stands for its token.
    async fn auth_publickey(&mut self, user: &str, key: VerifiedPublicKey<'_>) -> Result<Auth, Self::Error> {
        let fingerprint = key.public_key.fingerprint(russh::keys::HashAlg::Sha256).to_string();
        Ok(self.authenticate(user, Proof::Key(fingerprint)).await)
    }

    async fn auth_keyboard_interactive<'a>(
        &'a mut self,
        user: &str,
        _submethods: &str,
        response: Option<Response<'a>>,
    ) -> Result<Auth, Self::Error> {
        match response {
            None => Ok(Auth::Partial {
                name: "".into(),
                instructions: "".into(),
                prompts: vec![("sluice token: ".into(), false)].into(),
            }),
            Some(mut answers) => {
                let token = answers.next().map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
                Ok(self.authenticate(user, Proof::Token(Secret::new(token))).await)
            }
        }
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        match self.opened.is_some() || self.named_later.is_some() {
            true => {
                // What arrives on the channel comes through this handler's methods; what goes to
                // the client goes through the channel's writer, which waits for the client's
                // window (a client that reads slowly holds its command back, not sluice's memory).
                let (reader, writer) = channel.split();
                drop(reader);
                self.writers.insert(writer.id(), writer);
                reply.accept().await;
            }
            false => reply.reject(ChannelOpenFailure::AdministrativelyProhibited).await,
        }
        Ok(())
    }

    async fn channel_open_direct_tcpip(
        &mut self,
        channel: Channel<Msg>,
        host: &str,
        port: u32,
        originator: &str,
        originator_port: u32,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        let Some(opened) = self.opened.clone() else {
            reply.reject(ChannelOpenFailure::AdministrativelyProhibited).await;
            return Ok(());
        };
        let to = format!("{host}:{port}");
        let action = ExecAction::session(ExecRequest::Forward(to.clone()));
        let run = Run::start(&opened);
        let Some(decision) = decide_at_once(&opened, &action).await else {
            reply.reject(ChannelOpenFailure::AdministrativelyProhibited).await;
            return Ok(());
        };
        if !decision.allows() {
            tracing::debug!(peer = %self.peer, %to, "forwarding refused");
            run.finish(&opened.log, &action.line, (decision.effect(), decision.rule()), None, None);
            reply.reject(ChannelOpenFailure::AdministrativelyProhibited).await;
            return Ok(());
        }
        reply.accept().await;
        let origin = (originator.to_string(), originator_port);
        tokio::spawn(crate::forward::run(opened, channel, (host.to_string(), port), origin, run, decision));
        Ok(())
    }

    /// `ssh -R`: the host listens for the client where a rule allows it, on a session of sluice's
    /// own that lasts as long as the client's connection and its standing.
    async fn tcpip_forward(
        &mut self,
        address: &str,
        port: &mut u32,
        session: &mut Session,
    ) -> Result<bool, Self::Error> {
        let Some(opened) = self.opened.clone() else { return Ok(false) };
        let action = ExecAction::session(ExecRequest::Listen(format!("{address}:{port}")));
        let run = Run::start(&opened);
        let Some(decision) = decide_at_once(&opened, &action).await else { return Ok(false) };
        let verdict = (decision.effect(), decision.rule());
        if !decision.allows() {
            run.finish(&opened.log, &action.line, verdict, None, None);
            return Ok(false);
        }
        if self.listening.is_none() {
            let back = Some(session.handle());
            match upstream::connect_with(&opened.target, opened.grant.credential.as_ref(), back).await {
                Ok(upstream) => {
                    let upstream = Arc::new(upstream);
                    tokio::spawn(end_with_standing(Arc::downgrade(&opened), Arc::clone(&upstream)));
                    self.listening = Some(upstream);
                }
                Err(e) => {
                    run.finish(&opened.log, &action.line, verdict, None, Some(e.to_string()));
                    return Ok(false);
                }
            }
        }
        let Some(upstream) = &self.listening else { return Ok(false) };
        match upstream.tcpip_forward(address, *port).await {
            Ok(bound) => {
                if *port == 0 {
                    *port = bound;
                }
                run.finish(&opened.log, &action.line, verdict, None, None);
                Ok(true)
            }
            Err(e) => {
                let error = format!("{} would not listen on {address}:{port}: {e}", opened.target.name);
                run.finish(&opened.log, &action.line, verdict, None, Some(error));
                Ok(false)
            }
        }
    }

    async fn cancel_tcpip_forward(
        &mut self,
        address: &str,
        port: u32,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        Ok(match &self.listening {
            Some(upstream) => upstream.cancel_tcpip_forward(address, port).await.is_ok(),
            None => false,
        })
    }

    async fn agent_request(&mut self, _channel: ChannelId, _session: &mut Session) -> Result<bool, Self::Error> {
        Ok(false)
    }

    async fn x11_request(
        &mut self,
        channel: ChannelId,
        _single_connection: bool,
        _x11_auth_protocol: &str,
        _x11_auth_cookie: &str,
        _x11_screen_number: u32,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        // The host's programs would reach the client's display: refused (and answered, or a
        // client waiting for the answer would wait for ever).
        session.channel_failure(channel)
    }

    async fn pty_request(
        &mut self,
        channel: ChannelId,
        term: &str,
        cols: u32,
        rows: u32,
        _pix_width: u32,
        _pix_height: u32,
        modes: &[(russh::Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        // Kept for a shell; a command runs without one (as with `ssh -T`).
        let terminal = Terminal { term: term.chars().take(64).collect(), cols, rows, modes: modes.to_vec() };
        self.terminals.insert(channel, terminal);
        session.channel_success(channel)
    }

    async fn window_change_request(
        &mut self,
        channel: ChannelId,
        cols: u32,
        rows: u32,
        _pix_width: u32,
        _pix_height: u32,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if let Some(input) = self.inputs.get(&channel) {
            let _ = input.send(Input::Resize { cols, rows }).await;
        }
        Ok(())
    }

    async fn env_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        value: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        if name == TARGET_VARIABLE {
            if self.open_named(value).await {
                return session.channel_success(channel);
            }
            if self.opened.is_none() {
                // The proof was refused (recorded): nothing more on this connection.
                session.channel_failure(channel)?;
                return session.disconnect(russh::Disconnect::ByApplication, "sluice refused the login", "en");
            }
        }
        // Other variables would change what a command does after it was decided.
        session.channel_failure(channel)
    }

    async fn shell_request(&mut self, channel: ChannelId, session: &mut Session) -> Result<(), Self::Error> {
        let terminal = self.terminals.remove(&channel);
        let Some((opened, input, out)) = self.take_request(channel, session)? else { return Ok(()) };
        let (handle, config) = (session.handle(), Arc::clone(&self.config));
        tokio::spawn(run_shell(opened, config, handle, out, terminal, input));
        Ok(())
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        if name != "sftp" {
            session.channel_success(channel)?;
            refuse_now(session.handle(), channel, reply::subsystem_not_served(name)).await;
            return Ok(());
        }
        let Some((opened, input, out)) = self.take_request(channel, session)? else { return Ok(()) };
        let (handle, config) = (session.handle(), Arc::clone(&self.config));
        tokio::spawn(run_sftp(opened, config, handle, out, input));
        Ok(())
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let Some((opened, input, out)) = self.take_request(channel, session)? else { return Ok(()) };
        let line = String::from_utf8_lossy(data).into_owned();
        let (handle, config) = (session.handle(), Arc::clone(&self.config));
        tokio::spawn(run_command(opened, config, handle, out, line, input));
        Ok(())
    }

    async fn data(&mut self, channel: ChannelId, data: &[u8], _session: &mut Session) -> Result<(), Self::Error> {
        // Waiting for room holds this client's connection back (TCP's own flow control) instead of
        // queueing without bound while its command waits for a review or for the host.
        if let Some(input) = self.inputs.get(&channel) {
            let _ = input.send(Input::Data(Bytes::copy_from_slice(data))).await;
        }
        Ok(())
    }

    async fn channel_eof(&mut self, channel: ChannelId, _session: &mut Session) -> Result<(), Self::Error> {
        if let Some(input) = self.inputs.get(&channel) {
            let _ = input.send(Input::Eof).await;
        }
        Ok(())
    }

    async fn channel_close(&mut self, channel: ChannelId, _session: &mut Session) -> Result<(), Self::Error> {
        self.inputs.remove(&channel);
        self.writers.remove(&channel);
        self.terminals.remove(&channel);
        Ok(())
    }
}

/// Tells the client why on its standard error, and ends the channel with `REFUSED_STATUS`.
pub(crate) async fn refuse_now(handle: Handle, channel: ChannelId, message: String) {
    let _ = handle.extended_data(channel, 1, message.into_bytes()).await;
    end(&handle, channel, REFUSED_STATUS).await;
}

pub(crate) async fn end(handle: &Handle, channel: ChannelId, status: u32) {
    let _ = handle.exit_status_request(channel, status).await;
    let _ = handle.eof(channel).await;
    let _ = handle.close(channel).await;
}

/// The decision on a request that cannot wait (a forward, as its channel opens): a review in
/// wait mode refuses it, and it goes through once approved and asked again. `None` once the
/// session can go on no more.
async fn decide_at_once<S: SessionGate>(opened: &Opened<S>, action: &ExecAction) -> Option<Decision> {
    let mut guard = opened.session.lock().await;
    let session = guard.as_mut().filter(|s| s.standing() == Standing::Valid)?;
    Some(session.decide(&Action::Exec(action)).await)
}

/// Ends sluice's listening session on the target (`ssh -R`) when the client's session ends or
/// may go on no more.
async fn end_with_standing<S: SessionGate>(opened: std::sync::Weak<Opened<S>>, upstream: Arc<upstream::Upstream>) {
    let mut check = tokio::time::interval(STANDING_EVERY);
    loop {
        check.tick().await;
        let Some(opened) = opened.upgrade() else { break };
        if ended(&opened).await.is_some() {
            break;
        }
    }
    let _ = upstream.disconnect(russh::Disconnect::ByApplication, "", "en").await;
}

/// The decision on `action`; one held for a review in wait mode is waited for, the client told
/// which review on its standard error. `None` once the session has ended.
pub(crate) async fn decide<S: SessionGate>(
    opened: &Opened<S>,
    handle: &Handle,
    channel: ChannelId,
    action: &ExecAction,
) -> Option<Decision> {
    let mut guard = opened.session.lock().await;
    let session = guard.as_mut()?;
    let decision = session.decide(&Action::Exec(action)).await;
    let Decision::Hold(hold) = &decision else { return Some(decision) };
    let waiting = session.await_review(hold);
    drop(guard);
    let _ = handle.extended_data(channel, 1, reply::held(hold).into_bytes()).await;
    Some(waiting.await)
}

/// Refuses a request the session can no longer serve (its token revoked, say), recorded like any
/// refusal; `true` when it did.
pub(crate) async fn refused_as_ended<S: SessionGate>(
    opened: &Opened<S>,
    handle: &Handle,
    channel: ChannelId,
    run: &Run,
    line: &str,
) -> bool {
    let Some(why) = ended(opened).await else { return false };
    let message = format!("sluice: this session can run no more commands: {why}; connect again\n");
    run.finish(&opened.log, line, ("deny", "session-ended"), None, Some(why.to_string()));
    refuse_now(handle.clone(), channel, message).await;
    true
}

/// One `exec` request, from its decision to its exit status.
async fn run_command<S: SessionGate>(
    opened: Arc<Opened<S>>,
    config: Arc<SshListenerConfig>,
    handle: Handle,
    out: ToClient,
    line: String,
    input: mpsc::Receiver<Input>,
) {
    let channel = out.id();
    let mut run = Run::start(&opened);
    // What sluice refuses before policy is asked is recorded like what policy refuses.
    if refused_as_ended(&opened, &handle, channel, &run, &line).await {
        return;
    }
    let mut action = config.reader.analyze(&line).await;
    let mut connected = None;
    match transfers::recognise(&action) {
        None => {}
        Some(Err(why)) => action.opaque = Some(why),
        Some(Ok(mut transfer)) => {
            // Where the paths lead is asked of the host before the decision.
            let prepared = async {
                let upstream = upstream::connect(&opened.target, opened.grant.credential.as_ref())
                    .await
                    .map_err(|e| e.to_string())?;
                crate::sftp::prepare_transfer(&upstream, &opened.target.name, &mut transfer).await?;
                Ok::<_, String>(upstream)
            };
            match prepared.await {
                Ok(upstream) => connected = Some(upstream),
                Err(e) => {
                    run.finish(&opened.log, &line, ("deny", "upstream"), None, Some(e.clone()));
                    return refuse_now(handle, channel, format!("sluice: {e}\n")).await;
                }
            }
            action.transfer = Some(transfer);
        }
    }
    let Some(decision) = decide(&opened, &handle, channel, &action).await else { return };
    if !decision.allows() {
        run.finish(&opened.log, &line, (decision.effect(), decision.rule()), None, None);
        return refuse_now(handle, channel, reply::refused(&decision, &config)).await;
    }
    let raw = action.transfer.is_some();
    let outcome = relay(&opened, &out, (&line, raw), connected, input, &mut run).await;
    conclude(&opened, &handle, channel, &run, (&line, (decision.effect(), decision.rule())), outcome, "\n").await;
}

/// Ends a request that ran, or could not: what went wrong told on the client's standard error
/// (`eol`: the line end its terminal expects), the outcome recorded with its verdict, the channel
/// closed with the exit status (`REFUSED_STATUS` when there is none).
pub(crate) async fn conclude<S: SessionGate>(
    opened: &Opened<S>,
    handle: &Handle,
    channel: ChannelId,
    run: &Run,
    (line, verdict): (&str, (&'static str, &str)),
    outcome: Result<Option<u32>, String>,
    eol: &str,
) {
    let (status, error) = match outcome {
        Ok(status) => (status, None),
        Err(e) => {
            let _ = handle.extended_data(channel, 1, format!("sluice: {e}{eol}").into_bytes()).await;
            (None, Some(e))
        }
    };
    run.finish(&opened.log, line, verdict, status, error);
    end(handle, channel, status.unwrap_or(REFUSED_STATUS)).await;
}

/// One `sftp` subsystem request: each operation decided as it comes (see `sftp`), the session
/// recorded as a whole when it ends.
async fn run_sftp<S: SessionGate>(
    opened: Arc<Opened<S>>,
    config: Arc<SshListenerConfig>,
    handle: Handle,
    out: ToClient,
    input: mpsc::Receiver<Input>,
) {
    let channel = out.id();
    let line = "(subsystem sftp)";
    let mut run = Run::start(&opened);
    if refused_as_ended(&opened, &handle, channel, &run, line).await {
        return;
    }
    let outcome = crate::sftp::serve(&opened, &config, &handle, out, input, &mut run).await;
    conclude(&opened, &handle, channel, &run, (line, ("allow", "sftp")), outcome, "\n").await;
}

/// The client's input passed to the host, until the client closes the channel or goes away
/// (`true`: then the command is stopped) or the host stops taking it (`false`). With the bytes
/// passed.
async fn forward_input(
    mut input: mpsc::Receiver<Input>,
    to_host: russh::ChannelWriteHalf<russh::client::Msg>,
) -> (u64, bool) {
    let mut bytes = 0u64;
    while let Some(piece) = input.recv().await {
        match piece {
            Input::Data(data) => {
                bytes += data.len() as u64;
                if to_host.data_bytes(data).await.is_err() {
                    return (bytes, false);
                }
            }
            // After its EOF a client waits for the output; its input ends when it closes.
            Input::Eof => {
                let _ = to_host.eof().await;
            }
            Input::Resize { .. } => {}
        }
    }
    (bytes, true)
}

/// Why the session may not go on (its token revoked or expired, its write access ended); `None`
/// while it may.
pub(crate) async fn ended<S: SessionGate>(opened: &Opened<S>) -> Option<&'static str> {
    match opened.session.lock().await.as_ref().map(SessionGate::standing) {
        Some(Standing::Valid) => None,
        Some(Standing::CredentialEnded) => Some("its token was revoked or has expired"),
        Some(Standing::AccessEnded) => Some("the write access it was opened with has ended"),
        None => Some("the session has ended"),
    }
}

/// How often a running command's session is checked (a revoked token stops it).
pub(crate) const STANDING_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// Output sent to the client, into the command's recording (handed to the log a stretch at a
/// time).
fn record_output<S: SessionGate>(opened: &Opened<S>, run: &Run, cast: Option<&mut CastRecorder>, out: &[u8]) {
    let Some(cast) = cast.filter(|_| !out.is_empty()) else { return };
    // Output and errors in the order the client received them, as a terminal shows both (a
    // terminal's line ends are CR LF).
    let mut shown = Vec::with_capacity(out.len() + out.len() / 16);
    for &b in out {
        if b == b'\n' {
            shown.push(b'\r');
        }
        shown.push(b);
    }
    cast.output(&shown);
    if cast.full() {
        crate::shell::hand_over(opened, run, cast);
    }
}

/// Runs an allowed command on the target (on `connected`, or a session opened now): the client's
/// input passed on, the output masked on its way back — a transfer's (`raw`) passed as it is.
/// Its exit status (255 for a signal, as ssh reports one); `Err` when it could not run.
async fn relay<S: SessionGate>(
    opened: &Opened<S>,
    to_client: &ToClient,
    (line, raw): (&str, bool),
    connected: Option<upstream::Upstream>,
    input: mpsc::Receiver<Input>,
    run: &mut Run,
) -> Result<Option<u32>, String> {
    let upstream = match connected {
        Some(upstream) => upstream,
        None => upstream::connect(&opened.target, opened.grant.credential.as_ref()).await.map_err(|e| e.to_string())?,
    };
    let name = &opened.target.name;
    let remote = upstream.channel_open_session().await.map_err(|e| format!("{name}: {e}"))?;
    remote.exec(true, line.as_bytes()).await.map_err(|e| format!("{name}: {e}"))?;
    let obligations = &opened.grant.obligations;
    let (mut stdout, mut stderr) = (LineMasker::new(obligations), LineMasker::new(obligations));
    // What the client sees of a command is recorded as a terminal's output (a transfer's data is
    // not text: its bytes are counted, not kept).
    let mut cast = (!raw).then(|| CastRecorder::new((80, 24)));
    // The client's input goes to the host from a task of its own: a host slow to take it must
    // never keep its output from being read (both directions full would wait on each other).
    let (mut from_host, to_host) = remote.split();
    let mut forwarding = Some(tokio::spawn(forward_input(input, to_host)));
    let mut status = None;
    let mut client_gone = false;
    let mut stopped = None;
    let mut check = tokio::time::interval(STANDING_EVERY);
    check.tick().await;
    loop {
        tokio::select! {
            _ = check.tick() => if let Some(why) = ended(opened).await {
                stopped = Some(why);
                break;
            },
            forwarded = async {
                match forwarding.as_mut() {
                    Some(task) => task.await,
                    None => std::future::pending().await,
                }
            } => {
                forwarding = None;
                let (bytes, gone) = forwarded.unwrap_or((run.input_bytes, true));
                run.input_bytes = bytes;
                if gone {
                    client_gone = true;
                    break;
                }
            },
            message = from_host.wait() => match message {
                Some(ChannelMsg::Data { data }) => {
                    let out = if raw { data.to_vec() } else { stdout.push(&data) };
                    run.output_bytes += out.len() as u64;
                    record_output(opened, run, cast.as_mut(), &out);
                    if !out.is_empty() && to_client.data_bytes(out).await.is_err() {
                        client_gone = true;
                        break;
                    }
                }
                Some(ChannelMsg::ExtendedData { data, ext }) => {
                    let out = stderr.push(&data);
                    run.output_bytes += out.len() as u64;
                    record_output(opened, run, cast.as_mut(), &out);
                    if !out.is_empty() && to_client.extended_data_bytes(ext, out).await.is_err() {
                        client_gone = true;
                        break;
                    }
                }
                Some(ChannelMsg::ExitStatus { exit_status }) => status = Some(exit_status),
                Some(ChannelMsg::ExitSignal { .. }) => status = status.or(Some(255)),
                Some(ChannelMsg::Close) | None => break,
                Some(_) => {}
            },
        }
    }
    if let Some(task) = forwarding {
        task.abort();
    }
    for (masker, ext) in [(&mut stdout, None), (&mut stderr, Some(1))] {
        let rest = masker.finish();
        run.output_bytes += rest.len() as u64;
        record_output(opened, run, cast.as_mut(), &rest);
        if !rest.is_empty() {
            let _ = match ext {
                None => to_client.data_bytes(rest).await,
                Some(ext) => to_client.extended_data_bytes(ext, rest).await,
            };
        }
    }
    if let Some(cast) = cast.as_mut() {
        crate::shell::hand_over(opened, run, cast);
    }
    let _ = upstream.disconnect(russh::Disconnect::ByApplication, "", "en").await;
    if let Some(why) = stopped {
        return Err(format!("the command was stopped: {why}"));
    }
    match client_gone {
        true => Err("the client went away before the command ended; it was stopped".into()),
        false => Ok(status.or(Some(255))),
    }
}

#[cfg(test)]
mod tests {
    use super::split_user;

    #[test]
    fn the_target_follows_the_last_plus() {
        assert_eq!(split_user("agent+web1"), Some(("agent", "web1")));
        assert_eq!(split_user("ci+bot+web1"), Some(("ci+bot", "web1")));
        assert_eq!(split_user("agent"), None);
        assert_eq!(split_user("+web1"), None);
        assert_eq!(split_user("agent+"), None);
    }
}
