from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise.fields.base import OnDelete
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('models', '0004_queue')]

    initial = False

    operations = [
        ops.CreateModel(
            name='Booking',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('code', fields.CharField(unique=True, max_length=8)),
                ('openid', fields.CharField(db_index=True, max_length=64)),
                ('hall', fields.ForeignKeyField('models.Hall', source_field='hall_id', db_constraint=True, to_field='id', related_name='bookings', on_delete=OnDelete.CASCADE)),
                ('category', fields.ForeignKeyField('models.Category', source_field='category_id', db_constraint=True, to_field='id', related_name='bookings', on_delete=OnDelete.CASCADE)),
                ('local_day', fields.DateField()),
                ('start_min', fields.SmallIntField()),
                ('starts_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('status', fields.CharField(default='booked', max_length=16)),
                ('active_key', fields.CharField(null=True, unique=True, max_length=120)),
                ('moves', fields.SmallIntField(default=0)),
                ('name', fields.CharField(default='', max_length=40)),
                ('mobile', fields.CharField(default='', max_length=16)),
                ('id_last4', fields.CharField(default='', max_length=4)),
                ('id_hash', fields.CharField(default='', max_length=64)),
                ('held_points', fields.SmallIntField(default=0)),
                ('ticket_id', fields.IntField(null=True)),
                ('checked_in_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('ended_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('end_reason', fields.CharField(default='', max_length=16)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={'table': 'booking', 'app': 'models', 'indexes': [Index(fields=['hall_id', 'local_day', 'category_id'])], 'pk_attr': 'id', 'table_description': "A citizen's appointment: the slot, its state, and the contact it was made with."},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='BookingPoints',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('openid', fields.CharField(unique=True, max_length=64)),
                ('points', fields.SmallIntField()),
                ('grown_on', fields.DateField()),
            ],
            options={'table': 'booking_points', 'app': 'models', 'pk_attr': 'id', 'table_description': 'A citizen\'s points under the "points" policy, and the day they last grew back.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='BookingProfile',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('openid', fields.CharField(unique=True, max_length=64)),
                ('name', fields.CharField(max_length=40)),
                ('mobile', fields.CharField(max_length=16)),
                ('id_last4', fields.CharField(default='', max_length=4)),
                ('id_hash', fields.CharField(default='', max_length=64)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={'table': 'booking_profile', 'app': 'models', 'pk_attr': 'id', 'table_description': 'The contact a citizen booked with last, offered again next time.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='BookingSlot',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('hall', fields.ForeignKeyField('models.Hall', source_field='hall_id', db_constraint=True, to_field='id', related_name='booking_slots', on_delete=OnDelete.CASCADE)),
                ('category', fields.ForeignKeyField('models.Category', source_field='category_id', db_constraint=True, to_field='id', related_name='booking_slots', on_delete=OnDelete.CASCADE)),
                ('local_day', fields.DateField()),
                ('start_min', fields.SmallIntField()),
                ('capacity', fields.SmallIntField()),
                ('booked', fields.SmallIntField(default=0)),
            ],
            options={'table': 'booking_slot', 'app': 'models', 'unique_together': (('hall', 'category', 'local_day', 'start_min'),), 'pk_attr': 'id', 'table_description': 'The places of one slot: how many there are and how many are taken.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='CheckinCode',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('hall', fields.ForeignKeyField('models.Hall', source_field='hall_id', db_constraint=True, to_field='id', related_name='checkin_codes', on_delete=OnDelete.CASCADE)),
                ('scene', fields.CharField(unique=True, max_length=64)),
                ('ticket', fields.CharField(max_length=200)),
                ('url', fields.CharField(unique=True, max_length=200)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'checkin_code', 'app': 'models', 'pk_attr': 'id', 'table_description': "A hall's permanent check-in QR code: the scene it carries and the link it encodes."},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Closure',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('hall_code', fields.CharField(default='*', max_length=32)),
                ('day', fields.DateField(db_index=True)),
                ('reason', fields.CharField(default='', max_length=100)),
                ('created_by', fields.CharField(default='', max_length=64)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'hall_closure', 'app': 'models', 'unique_together': (('hall_code', 'day'),), 'pk_attr': 'id', 'table_description': 'A day a hall (or every hall, "*") is shut, added by an administrator.'},
            bases=['Model'],
        ),
    ]
