from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from json import dumps, loads
from tortoise.fields.base import OnDelete
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('models', '0005_booking')]

    initial = False

    operations = [
        ops.CreateModel(
            name='Activity',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('code', fields.CharField(unique=True, max_length=64)),
                ('title', fields.CharField(max_length=100)),
                ('description', fields.TextField(default='', unique=False)),
                ('place', fields.CharField(max_length=100)),
                ('starts_at', fields.DatetimeField(db_index=True, auto_now=False, auto_now_add=False)),
                ('ends_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('capacity', fields.IntField()),
                ('signed_up', fields.IntField(default=0)),
                ('status', fields.CharField(default='open', max_length=16)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={'table': 'classroom_activity', 'app': 'models', 'pk_attr': 'id', 'table_description': 'A public activity of the Citizens Classroom, with its seats and how many are taken.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Complaint',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('openid', fields.CharField(db_index=True, max_length=64)),
                ('kind', fields.CharField(default='', max_length=16)),
                ('text', fields.TextField(unique=False)),
                ('images', fields.JSONField(default=list, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('status', fields.CharField(default='open', max_length=16)),
                ('due_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('answer', fields.TextField(default='', unique=False)),
                ('answered_by', fields.CharField(default='', max_length=64)),
                ('answered_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'complaint', 'app': 'models', 'pk_attr': 'id', 'table_description': "A complaint or suggestion: the citizen's words and pictures, and the hall's answer."},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Evaluation',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('subject', fields.CharField(default='ticket', max_length=8)),
                ('ticket', fields.OneToOneField('models.Ticket', source_field='ticket_id', null=True, db_constraint=True, to_field='id', related_name='evaluation', on_delete=OnDelete.SET_NULL)),
                ('openid', fields.CharField(db_index=True, max_length=64)),
                ('hall', fields.ForeignKeyField('models.Hall', source_field='hall_id', null=True, db_constraint=True, to_field='id', related_name='evaluations', on_delete=OnDelete.SET_NULL)),
                ('category', fields.ForeignKeyField('models.Category', source_field='category_id', null=True, db_constraint=True, to_field='id', related_name='evaluations', on_delete=OnDelete.SET_NULL)),
                ('window_code', fields.CharField(default='', max_length=16)),
                ('staff', fields.CharField(default='', max_length=64)),
                ('finished_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('level', fields.SmallIntField(null=True)),
                ('comment', fields.TextField(default='', unique=False)),
                ('source', fields.CharField(default='', max_length=8)),
                ('rated_at', fields.DatetimeField(null=True, db_index=True, auto_now=False, auto_now_add=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'evaluation', 'app': 'models', 'indexes': [Index(fields=['openid', 'level'])], 'pk_attr': 'id', 'table_description': "One evaluation of a ticket's service, or of the hall as a whole."},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='FollowUp',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('evaluation', fields.OneToOneField('models.Evaluation', source_field='evaluation_id', db_constraint=True, to_field='id', related_name='follow_up', on_delete=OnDelete.CASCADE)),
                ('openid', fields.CharField(db_index=True, max_length=64)),
                ('status', fields.CharField(default='open', max_length=16)),
                ('opened_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('visit_due_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('fix_due_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('visited_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('visit_note', fields.TextField(default='', unique=False)),
                ('answer', fields.TextField(default='', unique=False)),
                ('answered_by', fields.CharField(default='', max_length=64)),
                ('answered_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('review_level', fields.SmallIntField(null=True)),
                ('review_comment', fields.TextField(default='', unique=False)),
                ('reviewed_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'evaluation_follow_up', 'app': 'models', 'pk_attr': 'id', 'table_description': "The work order a bad review opens: return visit, fix and answer, the citizen's review."},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='SignUp',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('activity', fields.ForeignKeyField('models.Activity', source_field='activity_id', db_constraint=True, to_field='id', related_name='sign_ups', on_delete=OnDelete.CASCADE)),
                ('openid', fields.CharField(db_index=True, max_length=64)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'classroom_sign_up', 'app': 'models', 'unique_together': (('activity', 'openid'),), 'pk_attr': 'id', 'table_description': "A citizen's seat at an activity. A cancelled seat is deleted, not kept."},
            bases=['Model'],
        ),
        ops.AddField(
            model_name='Citizen',
            name='muted_notices',
            field=fields.JSONField(default=list, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads),
        ),
    ]
