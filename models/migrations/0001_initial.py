from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from json import dumps, loads
from tortoise.fields.base import OnDelete
from tortoise import fields

class Migration(migrations.Migration):
    initial = True

    operations = [
        ops.CreateModel(
            name='Category',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('code', fields.CharField(unique=True, max_length=32)),
                ('name', fields.CharField(max_length=32)),
                ('prefix', fields.CharField(max_length=2)),
                ('description', fields.TextField(default='', unique=False)),
                ('sort', fields.IntField(default=0)),
            ],
            options={'table': 'category', 'app': 'models', 'pk_attr': 'id', 'table_description': 'A comprehensive window category, whose prefix starts every queue number (A001).'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Citizen',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('openid', fields.CharField(unique=True, max_length=64)),
                ('is_following', fields.BooleanField(default=True)),
                ('followed_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('unfollowed_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('language', fields.CharField(default='zh', max_length=8)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={'table': 'citizen', 'app': 'models', 'pk_attr': 'id', 'table_description': 'A follower of the account. No name, phone or ID number is kept here.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Hall',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('code', fields.CharField(unique=True, max_length=32)),
                ('name', fields.CharField(max_length=64)),
                ('kind', fields.CharField(default='branch', max_length=16)),
                ('address', fields.CharField(default='', max_length=200)),
                ('phone', fields.CharField(default='', max_length=32)),
                ('latitude', fields.FloatField(null=True)),
                ('longitude', fields.FloatField(null=True)),
                ('hours', fields.JSONField(default=list, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('hours_text', fields.CharField(default='', max_length=200)),
                ('summary', fields.TextField(default='', unique=False)),
                ('details', fields.JSONField(default=dict, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('sort', fields.IntField(default=0)),
                ('categories', fields.ManyToManyField('models.Category', unique=True, db_constraint=True, through='hall_category', forward_key='category_id', backward_key='hall_id', related_name='halls', on_delete=OnDelete.CASCADE)),
            ],
            options={'table': 'hall', 'app': 'models', 'pk_attr': 'id', 'table_description': 'A place citizens go: the main hall, a branch hall, or the 24-hour self-service area.'},
            bases=['Model'],
        ),
    ]
