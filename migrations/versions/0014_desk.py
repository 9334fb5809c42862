"""the desk: escalations humans claim, answer, resolve, release or hand back; desk users

Reviewed by hand.

- escalations.status ('open' | 'claimed' | 'resolved', never read) becomes ``state``:
  queued | claimed | resolved | handed_back. A claim sets ``claimed_by``, a lease
  (``lease_expires_at``, on the database clock) and ``claim_token``, which grows on every
  claim: every write of the claimer names the token, and a stale one changes nothing.
  ``queued_at`` is when the escalation last entered the queue; ``sla_due_at`` its first-
  response due time; ``priority`` from its reason.
- escalation_events: every transition, who made it, from which state to which.
- escalation_notes: private notes of the humans (never sent to the customer).
- desk_replies: one row per human reply, keyed by (escalation, claim token, the customer
  message the human last saw), so a double click or a retried request sends once.
- deliveries.turn_id becomes nullable and deliveries.escalation_id is added: a human's reply
  goes out through the same outbox as the bot's.
- messages.created_at defaults to clock_timestamp(): two messages of one transaction keep
  their order (the packet and the reply's newest-message check read them by time).
- turns.shadow: a turn outside ``rollout_percent`` runs in shadow (tools change nothing,
  nothing is sent; the agents' answer is a human's suggested reply).
- users (humans of the web desk; argon2id password hashes) and desk_sessions (only the
  SHA-256 digest of a session token is stored).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02 07:40:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

STATES = "('queued', 'claimed', 'resolved', 'handed_back')"


def upgrade() -> None:
    op.add_column("turns", sa.Column("shadow", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.alter_column("messages", "created_at", server_default=sa.text("clock_timestamp()"))
    op.alter_column("escalations", "status", new_column_name="state")
    op.execute("UPDATE escalations SET state = CASE state WHEN 'open' THEN 'queued' ELSE state END")
    op.create_check_constraint("ck_escalations_state", "escalations", f"state IN {STATES}")
    add = [
        sa.Column("priority", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("queued_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("sla_due_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("claim_token", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("claimed_by", sa.String(length=80), nullable=True),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("first_reply_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
    ]
    for column in add:
        op.add_column("escalations", column)
    op.execute("UPDATE escalations SET queued_at = created_at")
    op.create_check_constraint(
        "ck_escalations_claim",
        "escalations",
        "(state = 'claimed') = (claimed_by IS NOT NULL AND lease_expires_at IS NOT NULL)",
    )
    # The claim's scan: queued ones by SLA due time, then priority, then age.
    op.create_index(
        "ix_escalations_queue",
        "escalations",
        ["sla_due_at", sa.text("priority DESC"), "queued_at"],
        postgresql_where=sa.text("state = 'queued'"),
    )
    op.create_index(
        "ix_escalations_leases", "escalations", ["lease_expires_at"], postgresql_where=sa.text("state = 'claimed'")
    )

    op.create_table(
        "escalation_events",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("escalation_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("actor", sa.String(length=80), nullable=False),
        sa.Column("from_state", sa.String(length=16), nullable=True),
        sa.Column("to_state", sa.String(length=16), nullable=True),
        sa.Column("claim_token", sa.BigInteger(), nullable=True),
        sa.Column("data", postgresql.JSONB(astext_type=sa.Text()), nullable=False, server_default="{}"),
        sa.Column("at", sa.DateTime(timezone=True), server_default=sa.text("clock_timestamp()"), nullable=False),
        sa.ForeignKeyConstraint(["escalation_id"], ["escalations.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_escalation_events_escalation_id", "escalation_events", ["escalation_id"])

    op.create_table(
        "escalation_notes",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("escalation_id", sa.String(length=64), nullable=False),
        sa.Column("author", sa.String(length=80), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(["escalation_id"], ["escalations.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_escalation_notes_escalation_id", "escalation_notes", ["escalation_id"])

    op.alter_column("deliveries", "turn_id", nullable=True)
    op.add_column("deliveries", sa.Column("escalation_id", sa.String(length=64), nullable=True))
    op.create_foreign_key(
        "fk_deliveries_escalation_id", "deliveries", "escalations", ["escalation_id"], ["id"], ondelete="CASCADE"
    )
    # Erasure and retention find a conversation's deliveries, the humans' included, by it.
    op.create_index("ix_deliveries_conversation_id", "deliveries", ["conversation_id"])
    op.create_check_constraint(
        "ck_deliveries_origin", "deliveries", "(turn_id IS NOT NULL) <> (escalation_id IS NOT NULL)"
    )

    op.create_table(
        "desk_replies",
        sa.Column("escalation_id", sa.String(length=64), nullable=False),
        sa.Column("claim_token", sa.BigInteger(), nullable=False),
        sa.Column("seen_message_id", sa.String(length=64), nullable=False),
        sa.Column("message_id", sa.String(length=64), nullable=False),
        sa.Column("delivery_id", sa.String(length=64), nullable=True),
        sa.Column("author", sa.String(length=80), nullable=False),
        sa.Column("resolved", sa.Boolean(), nullable=False),
        sa.Column("acceptance", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(["escalation_id"], ["escalations.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("escalation_id", "claim_token", "seen_message_id"),
    )

    op.create_table(
        "users",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("password_hash", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("role IN ('agent', 'admin')", name="ck_users_role"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("uq_users_email", "users", [sa.text("lower(email)")], unique=True)
    op.create_table(
        "desk_sessions",
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=40), nullable=False),
        sa.Column("csrf_token", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("digest"),
    )
    op.create_index("ix_desk_sessions_user_id", "desk_sessions", ["user_id"])


def downgrade() -> None:
    op.drop_column("turns", "shadow")
    op.alter_column("messages", "created_at", server_default=sa.text("now()"))
    op.drop_table("desk_sessions")
    op.drop_index("uq_users_email", table_name="users")
    op.drop_table("users")
    op.drop_table("desk_replies")
    op.execute("DELETE FROM deliveries WHERE turn_id IS NULL")
    op.drop_constraint("ck_deliveries_origin", "deliveries", type_="check")
    op.drop_index("ix_deliveries_conversation_id", table_name="deliveries")
    op.drop_constraint("fk_deliveries_escalation_id", "deliveries", type_="foreignkey")
    op.drop_column("deliveries", "escalation_id")
    op.alter_column("deliveries", "turn_id", nullable=False)
    op.drop_table("escalation_notes")
    op.drop_table("escalation_events")
    op.drop_index("ix_escalations_leases", table_name="escalations")
    op.drop_index("ix_escalations_queue", table_name="escalations")
    op.drop_constraint("ck_escalations_claim", "escalations", type_="check")
    for name in (
        "resolved_at",
        "first_reply_at",
        "lease_expires_at",
        "claimed_at",
        "claimed_by",
        "claim_token",
        "sla_due_at",
        "queued_at",
        "priority",
    ):
        op.drop_column("escalations", name)
    op.drop_constraint("ck_escalations_state", "escalations", type_="check")
    op.execute("UPDATE escalations SET state = CASE state WHEN 'queued' THEN 'open' ELSE state END")
    op.alter_column("escalations", "state", new_column_name="status")
