//! Interactive shells (`ssh host` without a command): decided by policy as a whole (a rule with
//! `shell = true` allows one; the read-only preset refuses them), then run on the host in a
//! terminal of the client's size and type. The output is masked (a line held until it ends, or
//! until the host pauses, so that prompts show) and recorded as asciicast v2 in the audit log; the
//! lines typed are recorded with what policy would say of each as a command — an audit aid, not
//! an enforcement: a terminal is not a security boundary.

use crate::SshListenerConfig;
use crate::output::LineMasker;
use crate::reply;
use crate::session::{
    Input, Opened, Run, STANDING_EVERY, ToClient, conclude, decide, ended, refuse_now, refused_as_ended,
};
use crate::terminal::{CastRecorder, EchoCheck, TypedLines};
use crate::upstream;
use russh::ChannelMsg;
use russh::server::Handle;
use sluice_core::exec::{ExecAction, ExecRequest};
use sluice_gate::{Action, SessionGate, SessionLog};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// How long output that does not end a line (a prompt) waits for the rest of its line.
const PROMPT_WAIT: Duration = Duration::from_millis(40);
/// How long a typed line waits to be seen echoed before it counts as typed without echo.
const ECHO_WAIT: Duration = Duration::from_millis(500);
/// How often the recording is handed to the log at the latest.
const RECORD_EVERY: Duration = Duration::from_secs(1);

/// The terminal the client asked for.
#[derive(Clone, Debug)]
pub struct Terminal {
    pub term: String,
    pub cols: u32,
    pub rows: u32,
    pub modes: Vec<(russh::Pty, u32)>,
}

/// One `shell` request, from its decision to its end.
pub(crate) async fn run_shell<S: SessionGate>(
    opened: Arc<Opened<S>>,
    config: Arc<SshListenerConfig>,
    handle: Handle,
    out: ToClient,
    terminal: Option<Terminal>,
    input: mpsc::Receiver<Input>,
) {
    let channel = out.id();
    let action = ExecAction::session(ExecRequest::Shell);
    let mut run = Run::start(&opened);
    if refused_as_ended(&opened, &handle, channel, &run, &action.line).await {
        return;
    }
    let Some(decision) = decide(&opened, &handle, channel, &action).await else { return };
    if !decision.allows() {
        run.finish(&opened.log, &action.line, (decision.effect(), decision.rule()), None, None);
        return refuse_now(handle, channel, reply::refused(&decision, &config)).await;
    }
    let outcome = relay(&opened, &config, &out, terminal, input, &mut run).await;
    let verdict = (decision.effect(), decision.rule());
    conclude(&opened, &handle, channel, &run, (&action.line, verdict), outcome, "\r\n").await;
}

async fn relay<S: SessionGate>(
    opened: &Opened<S>,
    config: &SshListenerConfig,
    to_client: &ToClient,
    terminal: Option<Terminal>,
    mut input: mpsc::Receiver<Input>,
    run: &mut Run,
) -> Result<Option<u32>, String> {
    let name = &opened.target.name;
    let upstream =
        upstream::connect(&opened.target, opened.grant.credential.as_ref()).await.map_err(|e| e.to_string())?;
    let remote = upstream.channel_open_session().await.map_err(|e| format!("{name}: {e}"))?;
    if let Some(t) = &terminal {
        remote.request_pty(false, &t.term, t.cols, t.rows, 0, 0, &t.modes).await.map_err(|e| format!("{name}: {e}"))?;
    }
    remote.request_shell(true).await.map_err(|e| format!("{name}: {e}"))?;
    let (mut from_host, to_host) = remote.split();
    let mut masker = LineMasker::new(&opened.grant.obligations);
    // A client without a terminal of its own (`ssh -tt` from a script) says 0 × 0.
    let size = terminal.as_ref().map(|t| (t.cols, t.rows)).filter(|(c, r)| *c > 0 && *r > 0);
    let mut cast = CastRecorder::new(size.unwrap_or((80, 24)));
    let (mut typed, mut echo) = (TypedLines::default(), EchoCheck::default());
    let (mut status, mut stopped, mut client_gone) = (None, None, false);
    let mut check = tokio::time::interval(STANDING_EVERY);
    let mut record = tokio::time::interval(RECORD_EVERY);
    let prompt = tokio::time::sleep(Duration::MAX / 4);
    tokio::pin!(prompt);
    let mut prompt_armed = false;
    loop {
        tokio::select! {
            _ = check.tick() => if let Some(why) = ended(opened).await {
                stopped = Some(why);
                break;
            },
            _ = record.tick() => {
                hand_over(opened, run, &mut cast);
                for (line, echoed) in echo.settled(ECHO_WAIT) {
                    typed_line(opened, config, &line, echoed).await;
                }
            },
            _ = &mut prompt, if prompt_armed => {
                prompt_armed = false;
                let out = masker.finish();
                echo.output(&out);
                if send(to_client, &out, &mut cast, run).await.is_err() {
                    client_gone = true;
                    break;
                }
            },
            piece = input.recv() => match piece {
                Some(Input::Data(data)) => {
                    run.input_bytes += data.len() as u64;
                    for line in typed.push(&data) {
                        echo.typed(line);
                    }
                    // The host's shell reads the terminal whenever it likes: holding its input
                    // back is the client's own flow control.
                    if to_host.data_bytes(data).await.is_err() {
                        break;
                    }
                }
                Some(Input::Resize { cols, rows }) => {
                    cast.resize(cols, rows);
                    let _ = to_host.window_change(cols, rows, 0, 0).await;
                }
                Some(Input::Eof) => {
                    let _ = to_host.eof().await;
                }
                None => {
                    client_gone = true;
                    break;
                }
            },
            message = from_host.wait() => match message {
                Some(ChannelMsg::Data { data }) | Some(ChannelMsg::ExtendedData { data, .. }) => {
                    let out = masker.push(&data);
                    echo.output(&out);
                    if send(to_client, &out, &mut cast, run).await.is_err() {
                        client_gone = true;
                        break;
                    }
                    if cast.full() {
                        hand_over(opened, run, &mut cast);
                    }
                    prompt_armed = masker.holds();
                    if prompt_armed {
                        prompt.as_mut().reset(tokio::time::Instant::now() + PROMPT_WAIT);
                    }
                }
                Some(ChannelMsg::ExitStatus { exit_status }) => status = Some(exit_status),
                Some(ChannelMsg::ExitSignal { .. }) => status = status.or(Some(255)),
                Some(ChannelMsg::Close) | None => break,
                Some(_) => {}
            },
        }
    }
    let rest = masker.finish();
    let _ = send(to_client, &rest, &mut cast, run).await;
    echo.output(&rest);
    hand_over(opened, run, &mut cast);
    for (line, echoed) in echo.settled(Duration::ZERO) {
        typed_line(opened, config, &line, echoed).await;
    }
    let _ = upstream.disconnect(russh::Disconnect::ByApplication, "", "en").await;
    match (stopped, client_gone) {
        (Some(why), _) => Err(format!("the shell was stopped: {why}")),
        (None, true) => Err("the client went away; the shell was ended".into()),
        (None, false) => Ok(status.or(Some(255))),
    }
}

/// Output to the client, as recorded.
async fn send(to_client: &ToClient, out: &[u8], cast: &mut CastRecorder, run: &mut Run) -> Result<(), ()> {
    if out.is_empty() {
        return Ok(());
    }
    run.output_bytes += out.len() as u64;
    cast.output(out);
    to_client.data_bytes(out.to_vec()).await.map_err(|_| ())
}

pub(crate) fn hand_over<S: SessionGate>(opened: &Opened<S>, run: &Run, cast: &mut CastRecorder) {
    if let Some(events) = cast.take() {
        opened.log.terminal(run.seq(), cast.size(), events);
    }
}

/// A line typed into the shell, recorded with what policy would say of it as a command; one
/// the terminal did not echo (a password at a prompt) only as such.
async fn typed_line<S: SessionGate>(opened: &Opened<S>, config: &SshListenerConfig, line: &str, echoed: bool) {
    if !echoed {
        let note = "typed in an interactive shell without echo (a password at a prompt, say): not recorded";
        return Run::start(opened).finish(
            &opened.log,
            "(a line typed without echo)",
            ("typed", "-"),
            None,
            Some(note.into()),
        );
    }
    let action = config.reader.analyze(line).await;
    let explanation = match opened.session.lock().await.as_ref() {
        Some(session) => session.explain(&Action::Exec(&action)).await,
        None => return,
    };
    let note = format!(
        "typed in an interactive shell: as a command, policy would {} it (rule {}); recorded, not enforced",
        explanation.decision, explanation.rule
    );
    Run::start(opened).finish(&opened.log, line, ("typed", &explanation.rule), None, Some(note));
}
