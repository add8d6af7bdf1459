-- faultlens store, SQLite schema version 1.
-- Times are seconds since the epoch (UTC) as REAL; JSON columns hold JSON text.
-- The runner splits statements at line ends where sqlite3.complete_statement() says a
-- statement is complete: never put two statements on one line.

CREATE TABLE events (
    id TEXT PRIMARY KEY NOT NULL,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    timestamp REAL NOT NULL,
    correlation_id TEXT,
    trace_id TEXT,
    span_id TEXT,
    tenant_id TEXT,
    user_id TEXT,
    issue_id INTEGER,
    category TEXT,
    layer TEXT,
    payload TEXT NOT NULL
);

CREATE INDEX events_correlation ON events (correlation_id, timestamp)
    WHERE correlation_id IS NOT NULL;
CREATE INDEX events_kind_time ON events (kind, timestamp);
CREATE INDEX events_issue_time ON events (issue_id, timestamp, id)
    WHERE issue_id IS NOT NULL;

CREATE TABLE issues (
    id INTEGER PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    grouping_version INTEGER NOT NULL,
    tenant_id TEXT,
    title TEXT NOT NULL,
    culprit TEXT,
    category TEXT,
    layer TEXT,
    severity TEXT,
    status TEXT NOT NULL DEFAULT 'unresolved'
        CHECK (status IN ('unresolved', 'resolved', 'ignored', 'merged')),
    first_seen REAL NOT NULL,
    last_seen REAL NOT NULL,
    event_count INTEGER NOT NULL DEFAULT 0,
    user_count INTEGER NOT NULL DEFAULT 0,
    session_count INTEGER NOT NULL DEFAULT 0,
    regressed INTEGER NOT NULL DEFAULT 0,
    regressed_at REAL,
    resolved_at REAL,
    merged_into INTEGER REFERENCES issues (id),
    last_event_id TEXT
);

CREATE INDEX issues_status_last_seen ON issues (status, last_seen, id);
CREATE INDEX issues_last_seen ON issues (last_seen, id);
CREATE INDEX issues_tenant_last_seen ON issues (tenant_id, last_seen, id)
    WHERE tenant_id IS NOT NULL;

-- Every fingerprint an issue answers to: its own, and those of issues merged into it.
-- tenant_key is the tenant id, or '' for events without a tenant.
CREATE TABLE issue_fingerprints (
    tenant_key TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    issue_id INTEGER NOT NULL REFERENCES issues (id),
    grouping_version INTEGER NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (tenant_key, fingerprint)
) WITHOUT ROWID;

CREATE INDEX issue_fingerprints_issue ON issue_fingerprints (issue_id);

-- Exact distinct users and sessions per issue; the issue row caches their counts.
CREATE TABLE issue_users (
    issue_id INTEGER NOT NULL REFERENCES issues (id),
    user_id TEXT NOT NULL,
    PRIMARY KEY (issue_id, user_id)
) WITHOUT ROWID;

CREATE TABLE issue_sessions (
    issue_id INTEGER NOT NULL REFERENCES issues (id),
    session_id TEXT NOT NULL,
    PRIMARY KEY (issue_id, session_id)
) WITHOUT ROWID;

CREATE TABLE patterns (
    id TEXT PRIMARY KEY NOT NULL,
    type TEXT NOT NULL,
    status TEXT NOT NULL,
    tenant_id TEXT,
    first_occurrence REAL NOT NULL,
    last_occurrence REAL NOT NULL,
    occurrences INTEGER NOT NULL DEFAULT 0,
    layers TEXT NOT NULL DEFAULT '[]',
    fingerprints TEXT NOT NULL DEFAULT '[]',
    confidence REAL NOT NULL DEFAULT 0,
    details TEXT NOT NULL DEFAULT '{}'
);

CREATE INDEX patterns_status_last ON patterns (status, last_occurrence, id);

CREATE TABLE alerts (
    id TEXT PRIMARY KEY NOT NULL,
    rule TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('firing', 'resolved')),
    severity TEXT NOT NULL,
    tenant_id TEXT,
    fired_at REAL NOT NULL,
    resolved_at REAL,
    details TEXT NOT NULL DEFAULT '{}'
);

CREATE INDEX alerts_status_fired ON alerts (status, fired_at, id);
CREATE INDEX alerts_rule_fired ON alerts (rule, fired_at);

CREATE TABLE audit_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    timestamp REAL NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    tenant_id TEXT,
    details TEXT NOT NULL DEFAULT '{}'
);

CREATE INDEX audit_log_target ON audit_log (target, id);

CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only: UPDATE is not allowed');
END;

CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only: DELETE is not allowed');
END;
