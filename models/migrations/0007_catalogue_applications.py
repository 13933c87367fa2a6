from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from json import dumps, loads
from tortoise.fields.base import OnDelete
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('models', '0006_feedback_classroom')]

    initial = False

    operations = [
        ops.CreateModel(
            name='Application',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('application_no', fields.CharField(unique=True, max_length=32)),
                ('item_name', fields.CharField(max_length=100)),
                ('item_code', fields.CharField(default='', max_length=64)),
                ('unit', fields.CharField(default='', max_length=64)),
                ('phone_tail', fields.CharField(max_length=4)),
                ('status', fields.CharField(default='received', max_length=16)),
                ('seq', fields.IntField(default=0)),
                ('is_mailable', fields.BooleanField(default=True)),
                ('openid', fields.CharField(null=True, db_index=True, max_length=64)),
                ('changed_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'application', 'app': 'models', 'pk_attr': 'id', 'table_description': 'An application handled by the approval system, as far as the citizen needs to follow it.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='ApplicationEvent',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('application', fields.ForeignKeyField('models.Application', source_field='application_id', db_constraint=True, to_field='id', related_name='events', on_delete=OnDelete.CASCADE)),
                ('seq', fields.IntField()),
                ('status', fields.CharField(max_length=16)),
                ('note', fields.CharField(default='', max_length=200)),
                ('at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('source', fields.CharField(default='', max_length=80)),
            ],
            options={'table': 'application_event', 'app': 'models', 'unique_together': (('application', 'seq'),), 'pk_attr': 'id', 'table_description': 'One status of an application, when it was reached, and a note from the approval system.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='CatalogueItem',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('code', fields.CharField(unique=True, max_length=64)),
                ('name', fields.CharField(max_length=100)),
                ('unit', fields.CharField(max_length=64)),
                ('category', fields.ForeignKeyField('models.Category', source_field='category_id', db_constraint=True, to_field='id', related_name='items', on_delete=OnDelete.CASCADE)),
                ('topic', fields.CharField(default='', max_length=32)),
                ('aliases', fields.JSONField(default=list, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('conditions', fields.TextField(default='', unique=False)),
                ('materials', fields.JSONField(default=list, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('steps', fields.JSONField(default=list, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('legal_limit', fields.CharField(default='', max_length=64)),
                ('promised_limit', fields.CharField(default='', max_length=100)),
                ('fee', fields.CharField(default='', max_length=100)),
                ('online_via', fields.CharField(default='', max_length=100)),
                ('is_self_service', fields.BooleanField(default=False)),
                ('sort', fields.IntField(default=0)),
            ],
            options={'table': 'catalogue_item', 'app': 'models', 'pk_attr': 'id', 'table_description': 'An item a citizen can get done: its unit, window category, conditions and materials.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='MailRequest',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('application', fields.ForeignKeyField('models.Application', source_field='application_id', db_constraint=True, to_field='id', related_name='mail_requests', on_delete=OnDelete.CASCADE)),
                ('openid', fields.CharField(db_index=True, max_length=64)),
                ('status', fields.CharField(default='requested', max_length=16)),
                ('active_key', fields.IntField(null=True, unique=True)),
                ('address', fields.CharField(default='', max_length=200)),
                ('phone', fields.CharField(default='', max_length=16)),
                ('carrier', fields.CharField(default='', max_length=32)),
                ('tracking_no', fields.CharField(default='', max_length=40)),
                ('requested_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('mailed_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('erased_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'mail_request', 'app': 'models', 'pk_attr': 'id', 'table_description': "A citizen's request to post a certificate: the address and phone, then the tracking number."},
            bases=['Model'],
        ),
    ]
