//! Incoming publishes: commands to DR, shadow responses to the shadow
//! client, everything else acknowledged and dropped.
//!
//! Incoming publishes are acknowledged manually: a command only once DR has
//! made it durable (DR calls the [`InboundCommand::puback`] it is handed);
//! anything else at once.

use std::sync::atomic::Ordering;

use gridlink_protocol::{Command, MAX_PAYLOAD_BYTES, Topic, TopicKind, VenId, decode};
use rumqttc::{AsyncClient, Publish};

use tokio::sync::mpsc;

use crate::channels::ShadowInbound;
use crate::dr::InboundCommand;
use crate::metrics::Metrics;

/// Routes one incoming PUBLISH: a command to DR (which has it acknowledged
/// to the broker once durable), a shadow response to the shadow client;
/// everything else, and every command that is not acceptable, is
/// acknowledged here.
pub(super) fn on_publish(
    publish: &Publish,
    client: &AsyncClient,
    own_ven: &VenId,
    commands: Option<&mpsc::Sender<InboundCommand>>,
    shadow_inbound: Option<&mpsc::Sender<ShadowInbound>>,
    metrics: &Metrics,
) {
    let topic = Topic::parse(&publish.topic).ok();
    let ack_now = |publish: &Publish| {
        if let Err(error) = client.try_ack(publish) {
            tracing::warn!(%error, "cannot queue a PUBACK");
        }
    };
    match topic {
        Some(Topic {
            kind: TopicKind::Cmd,
            ven_id,
        }) if ven_id == *own_ven => {
            match check_command(&publish.payload, own_ven) {
                Ok(command) => {
                    let Some(tx) = commands else {
                        tracing::warn!(
                            command_id = command.command_id,
                            "no DR executor; command dropped"
                        );
                        ack_now(publish);
                        return;
                    };
                    let acker = client.clone();
                    let held = publish.clone();
                    let inbound = InboundCommand {
                        command,
                        puback: Box::new(move || {
                            if let Err(error) = acker.try_ack(&held) {
                                tracing::warn!(%error, "cannot queue a command's PUBACK");
                            }
                        }),
                    };
                    if let Err(error) = tx.try_send(inbound) {
                        // Not acknowledged: the broker delivers it again.
                        tracing::error!(%error, "DR is not taking commands; the command is left to the broker");
                    }
                }
                Err(reason) => {
                    metrics.dr_commands_rejected.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(%reason, bytes = publish.payload.len(), "command dropped");
                    ack_now(publish);
                }
            }
        }
        Some(Topic {
            kind: TopicKind::Shadow(op),
            ven_id,
        }) if ven_id == *own_ven => {
            if let Some(tx) = shadow_inbound
                && let Err(error) = tx.try_send(ShadowInbound {
                    op,
                    payload: publish.payload.to_vec(),
                })
            {
                tracing::warn!(%error, ?op, "shadow client is not taking messages; dropped");
            }
            ack_now(publish);
        }
        _ => {
            metrics.dr_commands_rejected.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(topic = %publish.topic, "message on an unexpected topic dropped");
            ack_now(publish);
        }
    }
}

/// Decodes a command payload and checks it is for `ven_id`.
pub fn check_command(payload: &[u8], ven_id: &VenId) -> Result<Command, String> {
    if payload.len() > MAX_PAYLOAD_BYTES {
        return Err(format!(
            "{} bytes is more than the {MAX_PAYLOAD_BYTES}-byte limit",
            payload.len()
        ));
    }
    let command: Command = decode(payload).map_err(|e| format!("does not decode: {e}"))?;
    if &command.ven_id != ven_id {
        return Err(format!(
            "command {} is for VEN {:?}, not this one",
            command.command_id,
            command.ven_id.as_str()
        ));
    }
    Ok(command)
}

#[cfg(test)]
mod tests {
    use gridlink_protocol::{CommandAction, Encoding, ObjectId, Timestamp, encode};

    use super::*;

    fn cancel_for(ven: &str) -> Command {
        Command {
            ven_id: VenId::new(ven).unwrap(),
            command_id: 7,
            issued_at: Timestamp::from_unix_ms(0).unwrap(),
            action: CommandAction::Cancel {
                event_id: ObjectId::new("event-1").unwrap(),
            },
        }
    }

    #[test]
    fn a_command_for_this_ven_is_accepted() {
        let ven = VenId::new("ven-1").unwrap();
        let payload = encode(&cancel_for("ven-1"), Encoding::Postcard).unwrap();
        assert_eq!(check_command(&payload, &ven).unwrap(), cancel_for("ven-1"));
    }

    #[test]
    fn oversized_undecodable_and_misaddressed_commands_are_refused() {
        let ven = VenId::new("ven-1").unwrap();
        let oversized = vec![0; MAX_PAYLOAD_BYTES + 1];
        let reason = check_command(&oversized, &ven).unwrap_err();
        assert!(reason.contains("-byte limit"), "{reason}");

        let reason = check_command(b"\x7fnot a command", &ven).unwrap_err();
        assert!(reason.starts_with("does not decode"), "{reason}");

        let payload = encode(&cancel_for("ven-2"), Encoding::Postcard).unwrap();
        let reason = check_command(&payload, &ven).unwrap_err();
        assert!(reason.contains("not this one"), "{reason}");
    }
}
