"""screening of new candidates on fewer images (multi-fidelity)

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04 23:50:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("evaluations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("screening", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("promoted", sa.Boolean(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("evaluations", schema=None) as batch_op:
        batch_op.drop_column("promoted")
        batch_op.drop_column("screening")
