//! [`DrStore`] on SQLite: every write in one `BEGIN IMMEDIATE` transaction
//! on the writer; lists are passed as JSON text and expanded with
//! `json_each`, so a write costs a few statements whatever the number of
//! VENs (one prepared outbox insert per command, the SQLite fast path).

use gridlink_protocol::{CommandAck, ObjectId, VenId};
use sqlx::{Row as _, SqliteConnection};

use super::SqliteStore;
use crate::store::StoreError;
use crate::store::dr::{
    AckOutcome, AckRecord, DrFilter, DrStore, EventRecord, EventWrite, OutboxCommand, PowerMean,
    ProgramRecord, ProgramWrite, SqlResult as _, ack_state, actions, check_groups, diff_vens,
    encode_command, json_column, json_list, object_id, targets_column, ven_id, vens_column,
};

type ProgramRow = (String, String, i64, i64, String, String);

fn program_record(row: ProgramRow) -> Result<ProgramRecord, StoreError> {
    let (id, name, created_ms, modified_ms, targets, body) = row;
    Ok(ProgramRecord {
        id: object_id(id)?,
        name,
        created_ms,
        modified_ms,
        targets: targets_column(&targets)?,
        body: json_column(&body, "program")?,
    })
}

macro_rules! select_program {
    () => {
        "SELECT id, name, created, modified, targets, body FROM programs"
    };
}

macro_rules! select_event {
    () => {
        "SELECT e.id, e.program_id, e.created, e.modified, e.start_ms, e.end_ms, \
     e.priority, e.targets, e.body, \
     (SELECT json_group_array(ven_id) FROM (SELECT ven_id FROM event_vens v \
        WHERE v.event_id = e.id AND v.removed IS NULL ORDER BY ven_id)) \
         FROM events e"
    };
}

fn event_record(row: &sqlx::sqlite::SqliteRow) -> Result<EventRecord, StoreError> {
    let targets: String = row.try_get(7).db()?;
    let body: String = row.try_get(8).db()?;
    let vens: String = row.try_get(9).db()?;
    Ok(EventRecord {
        id: object_id(row.try_get(0).db()?)?,
        program_id: object_id(row.try_get(1).db()?)?,
        created_ms: row.try_get(2).db()?,
        modified_ms: row.try_get(3).db()?,
        start_ms: row.try_get(4).db()?,
        end_ms: row.try_get(5).db()?,
        priority: row.try_get(6).db()?,
        targets: targets_column(&targets)?,
        vens: vens_column(&vens)?,
        body: json_column(&body, "event")?,
    })
}

async fn event_in(
    conn: &mut SqliteConnection,
    id: &ObjectId,
) -> Result<Option<EventRecord>, StoreError> {
    let row = sqlx::query(concat!(
        select_event!(),
        " WHERE e.id = ?1 AND e.deleted IS NULL"
    ))
    .bind(id.as_str())
    .fetch_optional(&mut *conn)
    .await
    .db()?;
    row.as_ref().map(event_record).transpose()
}

/// Allocates command ids and writes the commands to the outbox.
async fn queue(
    conn: &mut SqliteConnection,
    event_id: &ObjectId,
    event: Option<&gridlink_protocol::Event>,
    send: &[VenId],
    cancel: &[VenId],
    now_ms: i64,
) -> Result<Vec<OutboxCommand>, StoreError> {
    let planned = actions(event_id, event, send, cancel);
    if planned.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<(String, i64)> = sqlx::query_as(
        "INSERT INTO command_seq (ven_id, last_id) SELECT value, 1 FROM json_each(?1) WHERE true \
         ON CONFLICT (ven_id) DO UPDATE SET last_id = last_id + 1 RETURNING ven_id, last_id",
    )
    .bind(json_list(planned.iter().map(|(v, _)| v.as_str())))
    .fetch_all(&mut *conn)
    .await
    .db()?;
    let ids: std::collections::HashMap<String, i64> = ids.into_iter().collect();
    let mut out = Vec::with_capacity(planned.len());
    for (ven, action) in planned {
        let command_id = ids
            .get(ven.as_str())
            .copied()
            .ok_or_else(|| StoreError::Invalid(format!("no command id for {ven}")))?;
        let payload = encode_command(&ven, command_id as u64, now_ms, action)?;
        sqlx::query(
            "INSERT INTO command_outbox (ven_id, command_id, event_id, payload, created) \
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .bind(ven.as_str())
        .bind(command_id)
        .bind(event_id.as_str())
        .bind(payload.as_slice())
        .bind(now_ms)
        .execute(&mut *conn)
        .await
        .db()?;
        out.push(OutboxCommand {
            ven_id: ven,
            command_id: command_id as u64,
            payload,
        });
    }
    Ok(out)
}

async fn write_targets(
    conn: &mut SqliteConnection,
    id: &ObjectId,
    event: &EventWrite,
) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM event_targets WHERE event_id = ?1")
        .bind(id.as_str())
        .execute(&mut *conn)
        .await
        .db()?;
    sqlx::query(
        "INSERT INTO event_targets (event_id, target) SELECT ?1, value FROM json_each(?2) WHERE true \
         ON CONFLICT DO NOTHING",
    )
    .bind(id.as_str())
    .bind(json_list(event.targets.iter().map(String::as_str)))
    .execute(&mut *conn)
    .await
    .db()?;
    sqlx::query(
        "INSERT INTO event_vens (event_id, ven_id) SELECT ?1, value FROM json_each(?2) WHERE true \
         ON CONFLICT (event_id, ven_id) DO UPDATE SET removed = NULL",
    )
    .bind(id.as_str())
    .bind(json_list(event.vens.iter().map(VenId::as_str)))
    .execute(&mut *conn)
    .await
    .db()?;
    Ok(())
}

async fn current_vens(
    conn: &mut SqliteConnection,
    id: &ObjectId,
) -> Result<Vec<VenId>, StoreError> {
    let rows: Vec<String> = sqlx::query_scalar(
        "SELECT ven_id FROM event_vens WHERE event_id = ?1 AND removed IS NULL ORDER BY ven_id",
    )
    .bind(id.as_str())
    .fetch_all(&mut *conn)
    .await
    .db()?;
    rows.iter().map(|s| ven_id(s)).collect()
}

fn event_columns<'q>(
    query: sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments>,
    event: &'q EventWrite,
) -> sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments> {
    query
        .bind(event.program_id.as_str())
        .bind(event.start_ms)
        .bind(event.end_ms)
        .bind(event.priority)
        .bind(json_list(event.targets.iter().map(String::as_str)))
        .bind(event.body.to_string())
}

impl DrStore for SqliteStore {
    async fn create_program(
        &self,
        id: &ObjectId,
        program: &ProgramWrite,
        now_ms: i64,
    ) -> Result<ProgramRecord, StoreError> {
        sqlx::query(
            "INSERT INTO programs (id, name, created, modified, targets, body) VALUES (?1, ?2, ?3, ?3, ?4, ?5)",
        )
        .bind(id.as_str())
        .bind(program.name.as_str())
        .bind(now_ms)
        .bind(json_list(program.targets.iter().map(String::as_str)))
        .bind(program.body.to_string())
        .execute(&self.writer)
        .await
        .db()?;
        Ok(ProgramRecord {
            id: id.clone(),
            name: program.name.clone(),
            created_ms: now_ms,
            modified_ms: now_ms,
            targets: program.targets.clone(),
            body: program.body.clone(),
        })
    }

    async fn update_program(
        &self,
        id: &ObjectId,
        program: &ProgramWrite,
        now_ms: i64,
    ) -> Result<Option<ProgramRecord>, StoreError> {
        let row: Option<ProgramRow> = sqlx::query_as(
            "UPDATE programs SET name = ?2, modified = max(modified, ?3), targets = ?4, body = ?5 \
             WHERE id = ?1 RETURNING id, name, created, modified, targets, body",
        )
        .bind(id.as_str())
        .bind(program.name.as_str())
        .bind(now_ms)
        .bind(json_list(program.targets.iter().map(String::as_str)))
        .bind(program.body.to_string())
        .fetch_optional(&self.writer)
        .await
        .db()?;
        row.map(program_record).transpose()
    }

    async fn delete_program(&self, id: &ObjectId) -> Result<Option<ProgramRecord>, StoreError> {
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await.db()?;
        let row: Option<ProgramRow> = sqlx::query_as(concat!(select_program!(), " WHERE id = ?1"))
            .bind(id.as_str())
            .fetch_optional(&mut *tx)
            .await
            .db()?;
        let Some(row) = row else { return Ok(None) };
        let live: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM events WHERE program_id = ?1 AND deleted IS NULL",
        )
        .bind(id.as_str())
        .fetch_one(&mut *tx)
        .await
        .db()?;
        if live > 0 {
            return Err(StoreError::Conflict(format!(
                "program {id} has {live} events; delete them first"
            )));
        }
        for sql in [
            "DELETE FROM event_acks WHERE event_id IN (SELECT id FROM events WHERE program_id = ?1)",
            "DELETE FROM event_vens WHERE event_id IN (SELECT id FROM events WHERE program_id = ?1)",
            "DELETE FROM event_targets WHERE event_id IN (SELECT id FROM events WHERE program_id = ?1)",
            "DELETE FROM events WHERE program_id = ?1",
            "DELETE FROM programs WHERE id = ?1",
        ] {
            sqlx::query(sql)
                .bind(id.as_str())
                .execute(&mut *tx)
                .await
                .db()?;
        }
        tx.commit().await.db()?;
        program_record(row).map(Some)
    }

    async fn program(&self, id: &ObjectId) -> Result<Option<ProgramRecord>, StoreError> {
        let row: Option<ProgramRow> = sqlx::query_as(concat!(select_program!(), " WHERE id = ?1"))
            .bind(id.as_str())
            .fetch_optional(&self.reader)
            .await
            .db()?;
        row.map(program_record).transpose()
    }

    async fn programs(&self, filter: &DrFilter) -> Result<Vec<ProgramRecord>, StoreError> {
        let rows: Vec<ProgramRow> = sqlx::query_as(concat!(
            select_program!(),
            " WHERE (?1 = '[]' OR EXISTS (SELECT 1 FROM json_each(programs.targets) t \
               WHERE t.value IN (SELECT value FROM json_each(?1)))) \
             ORDER BY created, id LIMIT ?2 OFFSET ?3"
        ))
        .bind(json_list(filter.targets.iter().map(String::as_str)))
        .bind(i64::from(filter.limit))
        .bind(i64::from(filter.skip))
        .fetch_all(&self.reader)
        .await
        .db()?;
        rows.into_iter().map(program_record).collect()
    }

    async fn set_ven_groups(&self, ven: &VenId, groups: &[String]) -> Result<(), StoreError> {
        check_groups(groups)?;
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await.db()?;
        sqlx::query("INSERT INTO vens (ven_id) VALUES (?1) ON CONFLICT DO NOTHING")
            .bind(ven.as_str())
            .execute(&mut *tx)
            .await
            .db()?;
        sqlx::query("DELETE FROM ven_groups WHERE ven_id = ?1")
            .bind(ven.as_str())
            .execute(&mut *tx)
            .await
            .db()?;
        sqlx::query(
            "INSERT INTO ven_groups (ven_id, group_name) SELECT ?1, value FROM json_each(?2) WHERE true \
             ON CONFLICT DO NOTHING",
        )
        .bind(ven.as_str())
        .bind(json_list(groups.iter().map(String::as_str)))
        .execute(&mut *tx)
        .await
        .db()?;
        tx.commit().await.db()
    }

    async fn ven_groups(&self, ven: &VenId) -> Result<Vec<String>, StoreError> {
        sqlx::query_scalar(
            "SELECT group_name FROM ven_groups WHERE ven_id = ?1 ORDER BY group_name",
        )
        .bind(ven.as_str())
        .fetch_all(&self.reader)
        .await
        .db()
    }

    async fn resolve_targets(&self, targets: &[String]) -> Result<Vec<Vec<VenId>>, StoreError> {
        let mut out = Vec::with_capacity(targets.len());
        for target in targets {
            let ids: Vec<String> = sqlx::query_scalar(
                "SELECT ven_id FROM vens WHERE ven_id = ?1 \
                 UNION SELECT ven_id FROM ven_groups WHERE group_name = ?1",
            )
            .bind(target.as_str())
            .fetch_all(&self.reader)
            .await
            .db()?;
            let mut vens = ids
                .iter()
                .map(|s| ven_id(s))
                .collect::<Result<Vec<_>, _>>()?;
            vens.sort();
            out.push(vens);
        }
        Ok(out)
    }

    async fn create_event(
        &self,
        id: &ObjectId,
        event: &EventWrite,
        now_ms: i64,
    ) -> Result<(EventRecord, Vec<OutboxCommand>), StoreError> {
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await.db()?;
        event_columns(
            sqlx::query(
                "INSERT INTO events (id, created, modified, program_id, start_ms, end_ms, priority, targets, body) \
                 VALUES (?1, ?2, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )
            .bind(id.as_str())
            .bind(now_ms),
            event,
        )
        .execute(&mut *tx)
        .await
        .db()?;
        write_targets(&mut tx, id, event).await?;
        let commands = queue(&mut tx, id, Some(&event.event), &event.vens, &[], now_ms).await?;
        let record = event_in(&mut tx, id)
            .await?
            .ok_or_else(|| StoreError::Invalid(format!("event {id} vanished")))?;
        tx.commit().await.db()?;
        Ok((record, commands))
    }

    async fn update_event(
        &self,
        id: &ObjectId,
        event: &EventWrite,
        now_ms: i64,
    ) -> Result<Option<(EventRecord, Vec<OutboxCommand>)>, StoreError> {
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await.db()?;
        let updated = event_columns(
            sqlx::query(
                "UPDATE events SET modified = max(modified, ?2), program_id = ?3, start_ms = ?4, \
                 end_ms = ?5, priority = ?6, targets = ?7, body = ?8 WHERE id = ?1 AND deleted IS NULL",
            )
            .bind(id.as_str())
            .bind(now_ms),
            event,
        )
        .execute(&mut *tx)
        .await
        .db()?
        .rows_affected();
        if updated == 0 {
            return Ok(None);
        }
        let previous = current_vens(&mut tx, id).await?;
        let dropped = diff_vens(&previous, &event.vens);
        sqlx::query(
            "UPDATE event_vens SET removed = ?3 WHERE event_id = ?1 \
             AND ven_id IN (SELECT value FROM json_each(?2))",
        )
        .bind(id.as_str())
        .bind(json_list(dropped.iter().map(VenId::as_str)))
        .bind(now_ms)
        .execute(&mut *tx)
        .await
        .db()?;
        write_targets(&mut tx, id, event).await?;
        let commands = queue(
            &mut tx,
            id,
            Some(&event.event),
            &event.vens,
            &dropped,
            now_ms,
        )
        .await?;
        let record = event_in(&mut tx, id)
            .await?
            .ok_or_else(|| StoreError::Invalid(format!("event {id} vanished")))?;
        tx.commit().await.db()?;
        Ok(Some((record, commands)))
    }

    async fn delete_event(
        &self,
        id: &ObjectId,
        now_ms: i64,
    ) -> Result<Option<(EventRecord, Vec<OutboxCommand>)>, StoreError> {
        let mut tx = self.writer.begin_with("BEGIN IMMEDIATE").await.db()?;
        let Some(record) = event_in(&mut tx, id).await? else {
            return Ok(None);
        };
        sqlx::query("UPDATE events SET deleted = ?2, modified = max(modified, ?2) WHERE id = ?1")
            .bind(id.as_str())
            .bind(now_ms)
            .execute(&mut *tx)
            .await
            .db()?;
        let commands = queue(&mut tx, id, None, &[], &record.vens, now_ms).await?;
        tx.commit().await.db()?;
        Ok(Some((record, commands)))
    }

    async fn event(&self, id: &ObjectId) -> Result<Option<EventRecord>, StoreError> {
        let mut conn = self.reader.acquire().await.db()?;
        event_in(&mut conn, id).await
    }

    async fn events(&self, filter: &DrFilter) -> Result<Vec<EventRecord>, StoreError> {
        let rows = sqlx::query(concat!(
            select_event!(),
            " WHERE e.deleted IS NULL \
             AND (?1 IS NULL OR e.program_id = ?1) \
             AND (?2 IS NULL OR e.end_ms IS NULL OR e.end_ms > ?2) \
             AND (?3 = '[]' OR EXISTS (SELECT 1 FROM event_targets t WHERE t.event_id = e.id \
                  AND t.target IN (SELECT value FROM json_each(?3)))) \
             ORDER BY e.created, e.id LIMIT ?4 OFFSET ?5"
        ))
        .bind(filter.program_id.as_ref().map(ObjectId::as_str))
        .bind(filter.active_at)
        .bind(json_list(filter.targets.iter().map(String::as_str)))
        .bind(i64::from(filter.limit))
        .bind(i64::from(filter.skip))
        .fetch_all(&self.reader)
        .await
        .db()?;
        rows.iter().map(event_record).collect()
    }

    async fn unsent_commands(&self, limit: u32) -> Result<Vec<OutboxCommand>, StoreError> {
        let rows: Vec<(String, i64, Vec<u8>)> = sqlx::query_as(
            "SELECT ven_id, command_id, payload FROM command_outbox WHERE sent IS NULL \
             ORDER BY created, ven_id, command_id LIMIT ?1",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await
        .db()?;
        rows.into_iter()
            .map(|(ven, command_id, payload)| {
                Ok(OutboxCommand {
                    ven_id: ven_id(&ven)?,
                    command_id: command_id as u64,
                    payload,
                })
            })
            .collect()
    }

    async fn mark_sent(&self, sent: &[(VenId, u64)], now_ms: i64) -> Result<(), StoreError> {
        if sent.is_empty() {
            return Ok(());
        }
        let pairs = serde_json::Value::Array(
            sent.iter()
                .map(|(v, id)| serde_json::json!([v.as_str(), *id as i64]))
                .collect(),
        )
        .to_string();
        sqlx::query(
            "UPDATE command_outbox SET sent = ?1 WHERE sent IS NULL AND (ven_id, command_id) IN \
             (SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]') FROM json_each(?2))",
        )
        .bind(now_ms)
        .bind(pairs)
        .execute(&self.writer)
        .await
        .db()?;
        Ok(())
    }

    async fn record_ack(
        &self,
        ack: &CommandAck,
        received_ms: i64,
    ) -> Result<AckOutcome, StoreError> {
        let inserted = sqlx::query(
            "INSERT INTO event_acks (event_id, ven_id, command_id, state, at, reason, received) \
             SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7 WHERE EXISTS \
               (SELECT 1 FROM event_vens WHERE event_id = ?1 AND ven_id = ?2) \
             ON CONFLICT DO NOTHING",
        )
        .bind(ack.event_id.as_str())
        .bind(ack.ven_id.as_str())
        .bind(ack.command_id as i64)
        .bind(ack.state.name())
        .bind(ack.at.unix_ms())
        .bind(ack.reason.as_deref())
        .bind(received_ms)
        .execute(&self.writer)
        .await
        .db()?
        .rows_affected();
        if inserted > 0 {
            return Ok(AckOutcome::Stored);
        }
        let known: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM event_vens WHERE event_id = ?1 AND ven_id = ?2)",
        )
        .bind(ack.event_id.as_str())
        .bind(ack.ven_id.as_str())
        .fetch_one(&self.writer)
        .await
        .db()?;
        Ok(if known {
            AckOutcome::Duplicate
        } else {
            AckOutcome::UnknownEvent
        })
    }

    // An agent often reaches two states in the same millisecond (received
    // and scheduled, received and opted_out): their lifecycle order breaks
    // the tie, so the last row is the VEN's latest state.
    async fn event_acks(&self, event_id: &ObjectId) -> Result<Vec<AckRecord>, StoreError> {
        let rows: Vec<(String, i64, String, i64, Option<String>, i64)> = sqlx::query_as(
            "SELECT ven_id, command_id, state, at, reason, received FROM event_acks \
             WHERE event_id = ?1 ORDER BY ven_id, at, received, command_id, \
             CASE state WHEN 'received' THEN 0 WHEN 'scheduled' THEN 1 \
             WHEN 'active' THEN 2 ELSE 3 END",
        )
        .bind(event_id.as_str())
        .fetch_all(&self.reader)
        .await
        .db()?;
        rows.into_iter()
            .map(|(ven, command_id, state, at_ms, reason, received_ms)| {
                Ok(AckRecord {
                    ven_id: ven_id(&ven)?,
                    command_id: command_id as u64,
                    state: ack_state(&state)?,
                    at_ms,
                    reason,
                    received_ms,
                })
            })
            .collect()
    }

    async fn site_power(
        &self,
        vens: &[VenId],
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<(VenId, PowerMean)>, StoreError> {
        let rows: Vec<(String, f64, i64)> = sqlx::query_as(
            "SELECT s.ven_id, avg(m.value), count(*) \
             FROM series s JOIN vens v ON v.ven_id = s.ven_id JOIN metrics m ON m.series_id = s.id \
             WHERE s.ven_id IN (SELECT value FROM json_each(?1)) AND s.quantity = 0 AND s.phase = 0 \
               AND (s.meter = v.site_meter OR (v.site_meter IS NULL AND (SELECT count(*) FROM series o \
                 WHERE o.ven_id = s.ven_id AND o.quantity = 0 AND o.phase = 0) = 1)) \
               AND m.ts >= ?2 AND m.ts < ?3 GROUP BY s.ven_id ORDER BY s.ven_id",
        )
        .bind(json_list(vens.iter().map(VenId::as_str)))
        .bind(from_ms)
        .bind(to_ms)
        .fetch_all(&self.reader)
        .await
        .db()?;
        rows.into_iter()
            .map(|(ven, mean_w, readings)| {
                Ok((
                    ven_id(&ven)?,
                    PowerMean {
                        mean_w,
                        readings: readings as u64,
                    },
                ))
            })
            .collect()
    }
}
