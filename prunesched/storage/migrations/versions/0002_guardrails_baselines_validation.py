"""guardrail violations and validations on evaluations, baseline names on candidates

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04 20:20:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("evaluations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("violation", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("violation_reason", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("validation", sa.JSON(), nullable=True))
    with op.batch_alter_table("candidates", schema=None) as batch_op:
        batch_op.add_column(sa.Column("baseline", sa.String(length=200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("candidates", schema=None) as batch_op:
        batch_op.drop_column("baseline")
    with op.batch_alter_table("evaluations", schema=None) as batch_op:
        batch_op.drop_column("validation")
        batch_op.drop_column("violation_reason")
        batch_op.drop_column("violation")
