from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from json import dumps, loads
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('models', '0002_notice')]

    initial = False

    operations = [
        ops.CreateModel(
            name='NoticeConsent',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('openid', fields.CharField(db_index=True, max_length=64)),
                ('template_id', fields.CharField(max_length=64)),
                ('is_accepted', fields.BooleanField()),
                ('source', fields.CharField(default='popup', max_length=16)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={'table': 'notice_consent', 'app': 'models', 'unique_together': (('openid', 'template_id'),), 'pk_attr': 'id', 'table_description': "A citizen's latest answer to a subscription-notice popup, per template id."},
            bases=['Model'],
        ),
        ops.AddField(
            model_name='Notice',
            name='claimed_at',
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
        ops.AddField(
            model_name='Notice',
            name='data',
            field=fields.JSONField(default=dict, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads),
        ),
    ]
