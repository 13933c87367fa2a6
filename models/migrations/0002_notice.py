from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('models', '0001_initial')]

    initial = False

    operations = [
        ops.CreateModel(
            name='Notice',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('kind', fields.CharField(max_length=32)),
                ('ref', fields.CharField(max_length=64)),
                ('openid', fields.CharField(db_index=True, max_length=64)),
                ('status', fields.CharField(default='pending', max_length=16)),
                ('template_id', fields.CharField(default='', max_length=64)),
                ('client_msg_id', fields.CharField(default='', max_length=64)),
                ('msgid', fields.CharField(null=True, db_index=True, max_length=32)),
                ('attempts', fields.IntField(default=0)),
                ('last_error', fields.CharField(default='', max_length=200)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('sent_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('delivered_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'notice', 'app': 'models', 'unique_together': (('ref', 'kind'),), 'pk_attr': 'id', 'table_description': 'A template or subscription notice. The unique (ref, kind) makes each go out once.'},
            bases=['Model'],
        ),
    ]
