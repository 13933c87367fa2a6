from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from json import dumps, loads
from tortoise.fields.base import OnDelete
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('models', '0003_notice_claim_consent')]

    initial = False

    operations = [
        ops.CreateModel(
            name='NumberCounter',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('hall', fields.ForeignKeyField('models.Hall', source_field='hall_id', db_constraint=True, to_field='id', related_name='counters', on_delete=OnDelete.CASCADE)),
                ('category', fields.ForeignKeyField('models.Category', source_field='category_id', db_constraint=True, to_field='id', related_name='counters', on_delete=OnDelete.CASCADE)),
                ('local_day', fields.DateField()),
                ('seq', fields.IntField(default=0)),
                ('remote_taken', fields.IntField(default=0)),
                ('last_place', fields.IntField(default=0)),
            ],
            options={'table': 'number_counter', 'app': 'models', 'unique_together': (('hall', 'category', 'local_day'),), 'pk_attr': 'id', 'table_description': 'The last number given per hall, category and local day, and the remote takes so far.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Window',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('hall', fields.ForeignKeyField('models.Hall', source_field='hall_id', db_constraint=True, to_field='id', related_name='windows', on_delete=OnDelete.CASCADE)),
                ('code', fields.CharField(unique=True, max_length=16)),
                ('name', fields.CharField(max_length=32)),
                ('categories', fields.JSONField(default=list, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('is_open', fields.BooleanField(default=False)),
                ('staff', fields.CharField(null=True, max_length=64)),
                ('opened_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('sort', fields.IntField(default=0)),
            ],
            options={'table': 'queue_window', 'app': 'models', 'pk_attr': 'id', 'table_description': 'A service window of a hall, serving some categories, open or closed, staffed or not.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Ticket',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('hall', fields.ForeignKeyField('models.Hall', source_field='hall_id', db_constraint=True, to_field='id', related_name='tickets', on_delete=OnDelete.CASCADE)),
                ('category', fields.ForeignKeyField('models.Category', source_field='category_id', db_constraint=True, to_field='id', related_name='tickets', on_delete=OnDelete.CASCADE)),
                ('issued_category', fields.ForeignKeyField('models.Category', source_field='issued_category_id', db_constraint=True, to_field='id', related_name='issued_tickets', on_delete=OnDelete.CASCADE)),
                ('local_day', fields.DateField()),
                ('seq', fields.IntField()),
                ('number', fields.CharField(max_length=8)),
                ('source', fields.CharField(default='remote', max_length=16)),
                ('priority', fields.SmallIntField(default=0)),
                ('openid', fields.CharField(null=True, db_index=True, max_length=64)),
                ('status', fields.CharField(default='waiting', max_length=16)),
                ('active_key', fields.CharField(null=True, unique=True, max_length=100)),
                ('window', fields.ForeignKeyField('models.Window', source_field='window_id', null=True, db_constraint=True, to_field='id', related_name='tickets', on_delete=OnDelete.SET_NULL)),
                ('window_slot', fields.IntField(null=True, unique=True)),
                ('requeues', fields.SmallIntField(default=0)),
                ('recalls', fields.SmallIntField(default=0)),
                ('is_near_told', fields.BooleanField(default=False)),
                ('place', fields.IntField()),
                ('queued_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('called_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('started_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('finished_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'ticket', 'app': 'models', 'unique_together': (('hall', 'issued_category', 'local_day', 'seq'),), 'indexes': [Index(fields=['hall_id', 'category_id', 'status'])], 'pk_attr': 'id', 'table_description': 'A queue number: who holds it, where it stands and the window that called it.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='TicketEvent',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('ticket', fields.ForeignKeyField('models.Ticket', source_field='ticket_id', db_constraint=True, to_field='id', related_name='events', on_delete=OnDelete.CASCADE)),
                ('action', fields.CharField(max_length=16)),
                ('from_status', fields.CharField(default='', max_length=16)),
                ('to_status', fields.CharField(max_length=16)),
                ('at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('actor', fields.CharField(max_length=80)),
                ('window_code', fields.CharField(default='', max_length=16)),
                ('note', fields.CharField(default='', max_length=200)),
            ],
            options={'table': 'ticket_event', 'app': 'models', 'pk_attr': 'id', 'table_description': 'One change of a ticket: what was done, from which state to which, when and by whom.'},
            bases=['Model'],
        ),
        ops.AddField(
            model_name='Citizen',
            name='near_ahead',
            field=fields.SmallIntField(null=True),
        ),
    ]
