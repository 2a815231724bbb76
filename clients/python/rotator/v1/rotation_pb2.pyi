import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RotationType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ROTATION_TYPE_UNSPECIFIED: _ClassVar[RotationType]
    ROTATION_TYPE_POSTGRES_CREDENTIALS: _ClassVar[RotationType]
    ROTATION_TYPE_MYSQL_CREDENTIALS: _ClassVar[RotationType]
    ROTATION_TYPE_MSSQL_CREDENTIALS: _ClassVar[RotationType]
    ROTATION_TYPE_ORACLEDB_CREDENTIALS: _ClassVar[RotationType]
    ROTATION_TYPE_MONGODB_CREDENTIALS: _ClassVar[RotationType]
    ROTATION_TYPE_REDIS_CREDENTIALS: _ClassVar[RotationType]
    ROTATION_TYPE_LDAP_PASSWORD: _ClassVar[RotationType]
    ROTATION_TYPE_UNIX_LINUX_LOCAL_ACCOUNT: _ClassVar[RotationType]
    ROTATION_TYPE_WINDOWS_LOCAL_ACCOUNT: _ClassVar[RotationType]
    ROTATION_TYPE_AUTH0_CLIENT_SECRET: _ClassVar[RotationType]
    ROTATION_TYPE_OKTA_CLIENT_SECRET: _ClassVar[RotationType]
    ROTATION_TYPE_AZURE_CLIENT_SECRET: _ClassVar[RotationType]
    ROTATION_TYPE_AWS_IAM_USER_SECRET: _ClassVar[RotationType]
    ROTATION_TYPE_DATABRICKS_SERVICE_PRINCIPAL_SECRET: _ClassVar[RotationType]

class RotationStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ROTATION_STATUS_UNSPECIFIED: _ClassVar[RotationStatus]
    ROTATION_STATUS_SUCCESS: _ClassVar[RotationStatus]
    ROTATION_STATUS_FAILED: _ClassVar[RotationStatus]

class Backend(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BACKEND_UNSPECIFIED: _ClassVar[Backend]
    BACKEND_FORWARDED: _ClassVar[Backend]
    BACKEND_LOCAL: _ClassVar[Backend]
ROTATION_TYPE_UNSPECIFIED: RotationType
ROTATION_TYPE_POSTGRES_CREDENTIALS: RotationType
ROTATION_TYPE_MYSQL_CREDENTIALS: RotationType
ROTATION_TYPE_MSSQL_CREDENTIALS: RotationType
ROTATION_TYPE_ORACLEDB_CREDENTIALS: RotationType
ROTATION_TYPE_MONGODB_CREDENTIALS: RotationType
ROTATION_TYPE_REDIS_CREDENTIALS: RotationType
ROTATION_TYPE_LDAP_PASSWORD: RotationType
ROTATION_TYPE_UNIX_LINUX_LOCAL_ACCOUNT: RotationType
ROTATION_TYPE_WINDOWS_LOCAL_ACCOUNT: RotationType
ROTATION_TYPE_AUTH0_CLIENT_SECRET: RotationType
ROTATION_TYPE_OKTA_CLIENT_SECRET: RotationType
ROTATION_TYPE_AZURE_CLIENT_SECRET: RotationType
ROTATION_TYPE_AWS_IAM_USER_SECRET: RotationType
ROTATION_TYPE_DATABRICKS_SERVICE_PRINCIPAL_SECRET: RotationType
ROTATION_STATUS_UNSPECIFIED: RotationStatus
ROTATION_STATUS_SUCCESS: RotationStatus
ROTATION_STATUS_FAILED: RotationStatus
BACKEND_UNSPECIFIED: Backend
BACKEND_FORWARDED: Backend
BACKEND_LOCAL: Backend

class RotateSecretsRequest(_message.Message):
    __slots__ = ("type", "rotation_id")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    ROTATION_ID_FIELD_NUMBER: _ClassVar[int]
    type: RotationType
    rotation_id: str
    def __init__(self, type: _Optional[_Union[RotationType, str]] = ..., rotation_id: _Optional[str] = ...) -> None: ...

class RotateSecretsResponse(_message.Message):
    __slots__ = ("secret_rotation",)
    SECRET_ROTATION_FIELD_NUMBER: _ClassVar[int]
    secret_rotation: SecretRotation
    def __init__(self, secret_rotation: _Optional[_Union[SecretRotation, _Mapping]] = ...) -> None: ...

class GetSecretRotationRequest(_message.Message):
    __slots__ = ("type", "rotation_id", "by_name")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    ROTATION_ID_FIELD_NUMBER: _ClassVar[int]
    BY_NAME_FIELD_NUMBER: _ClassVar[int]
    type: RotationType
    rotation_id: str
    by_name: RotationName
    def __init__(self, type: _Optional[_Union[RotationType, str]] = ..., rotation_id: _Optional[str] = ..., by_name: _Optional[_Union[RotationName, _Mapping]] = ...) -> None: ...

class RotationName(_message.Message):
    __slots__ = ("name", "project_id", "environment", "secret_path")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_FIELD_NUMBER: _ClassVar[int]
    SECRET_PATH_FIELD_NUMBER: _ClassVar[int]
    name: str
    project_id: str
    environment: str
    secret_path: str
    def __init__(self, name: _Optional[str] = ..., project_id: _Optional[str] = ..., environment: _Optional[str] = ..., secret_path: _Optional[str] = ...) -> None: ...

class GetSecretRotationResponse(_message.Message):
    __slots__ = ("secret_rotation", "deliveries", "confirmations", "committed_version")
    SECRET_ROTATION_FIELD_NUMBER: _ClassVar[int]
    DELIVERIES_FIELD_NUMBER: _ClassVar[int]
    CONFIRMATIONS_FIELD_NUMBER: _ClassVar[int]
    COMMITTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    secret_rotation: SecretRotation
    deliveries: _containers.RepeatedCompositeFieldContainer[SinkDelivery]
    confirmations: _containers.RepeatedCompositeFieldContainer[ConsumerConfirmation]
    committed_version: int
    def __init__(self, secret_rotation: _Optional[_Union[SecretRotation, _Mapping]] = ..., deliveries: _Optional[_Iterable[_Union[SinkDelivery, _Mapping]]] = ..., confirmations: _Optional[_Iterable[_Union[ConsumerConfirmation, _Mapping]]] = ..., committed_version: _Optional[int] = ...) -> None: ...

class ConsumerConfirmation(_message.Message):
    __slots__ = ("consumer", "confirmed_version", "confirmed_at", "current")
    CONSUMER_FIELD_NUMBER: _ClassVar[int]
    CONFIRMED_VERSION_FIELD_NUMBER: _ClassVar[int]
    CONFIRMED_AT_FIELD_NUMBER: _ClassVar[int]
    CURRENT_FIELD_NUMBER: _ClassVar[int]
    consumer: str
    confirmed_version: int
    confirmed_at: _timestamp_pb2.Timestamp
    current: bool
    def __init__(self, consumer: _Optional[str] = ..., confirmed_version: _Optional[int] = ..., confirmed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., current: bool = ...) -> None: ...

class SinkDelivery(_message.Message):
    __slots__ = ("sink", "kind", "wanted_version", "delivered_version", "delivered_at", "last_error", "failing_since", "failures", "next_try_at")
    SINK_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    WANTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    DELIVERED_VERSION_FIELD_NUMBER: _ClassVar[int]
    DELIVERED_AT_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    FAILING_SINCE_FIELD_NUMBER: _ClassVar[int]
    FAILURES_FIELD_NUMBER: _ClassVar[int]
    NEXT_TRY_AT_FIELD_NUMBER: _ClassVar[int]
    sink: str
    kind: str
    wanted_version: int
    delivered_version: int
    delivered_at: _timestamp_pb2.Timestamp
    last_error: str
    failing_since: _timestamp_pb2.Timestamp
    failures: int
    next_try_at: _timestamp_pb2.Timestamp
    def __init__(self, sink: _Optional[str] = ..., kind: _Optional[str] = ..., wanted_version: _Optional[int] = ..., delivered_version: _Optional[int] = ..., delivered_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_error: _Optional[str] = ..., failing_since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., failures: _Optional[int] = ..., next_try_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListSecretRotationsRequest(_message.Message):
    __slots__ = ("type", "project_id")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    type: RotationType
    project_id: str
    def __init__(self, type: _Optional[_Union[RotationType, str]] = ..., project_id: _Optional[str] = ...) -> None: ...

class ListSecretRotationsResponse(_message.Message):
    __slots__ = ("secret_rotations",)
    SECRET_ROTATIONS_FIELD_NUMBER: _ClassVar[int]
    secret_rotations: _containers.RepeatedCompositeFieldContainer[SecretRotation]
    def __init__(self, secret_rotations: _Optional[_Iterable[_Union[SecretRotation, _Mapping]]] = ...) -> None: ...

class GetGeneratedCredentialsRequest(_message.Message):
    __slots__ = ("type", "rotation_id")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    ROTATION_ID_FIELD_NUMBER: _ClassVar[int]
    type: RotationType
    rotation_id: str
    def __init__(self, type: _Optional[_Union[RotationType, str]] = ..., rotation_id: _Optional[str] = ...) -> None: ...

class GetGeneratedCredentialsResponse(_message.Message):
    __slots__ = ("rotation_id", "type", "active_index", "generated_credentials")
    ROTATION_ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_INDEX_FIELD_NUMBER: _ClassVar[int]
    GENERATED_CREDENTIALS_FIELD_NUMBER: _ClassVar[int]
    rotation_id: str
    type: RotationType
    active_index: int
    generated_credentials: _containers.RepeatedCompositeFieldContainer[GeneratedCredential]
    def __init__(self, rotation_id: _Optional[str] = ..., type: _Optional[_Union[RotationType, str]] = ..., active_index: _Optional[int] = ..., generated_credentials: _Optional[_Iterable[_Union[GeneratedCredential, _Mapping]]] = ...) -> None: ...

class SecretRotation(_message.Message):
    __slots__ = ("id", "name", "description", "is_auto_rotation_enabled", "active_index", "folder_id", "connection_id", "created_at", "updated_at", "rotation_interval", "rotation_status", "last_rotation_attempted_at", "last_rotated_at", "last_rotation_job_id", "next_rotation_at", "is_last_rotation_manual", "connection", "environment", "project_id", "folder", "rotate_at_utc", "last_rotation_message", "type", "parameters", "secrets_mapping", "backend")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    IS_AUTO_ROTATION_ENABLED_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_INDEX_FIELD_NUMBER: _ClassVar[int]
    FOLDER_ID_FIELD_NUMBER: _ClassVar[int]
    CONNECTION_ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    ROTATION_INTERVAL_FIELD_NUMBER: _ClassVar[int]
    ROTATION_STATUS_FIELD_NUMBER: _ClassVar[int]
    LAST_ROTATION_ATTEMPTED_AT_FIELD_NUMBER: _ClassVar[int]
    LAST_ROTATED_AT_FIELD_NUMBER: _ClassVar[int]
    LAST_ROTATION_JOB_ID_FIELD_NUMBER: _ClassVar[int]
    NEXT_ROTATION_AT_FIELD_NUMBER: _ClassVar[int]
    IS_LAST_ROTATION_MANUAL_FIELD_NUMBER: _ClassVar[int]
    CONNECTION_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_FIELD_NUMBER: _ClassVar[int]
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    FOLDER_FIELD_NUMBER: _ClassVar[int]
    ROTATE_AT_UTC_FIELD_NUMBER: _ClassVar[int]
    LAST_ROTATION_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    SECRETS_MAPPING_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    description: str
    is_auto_rotation_enabled: bool
    active_index: int
    folder_id: str
    connection_id: str
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    rotation_interval: int
    rotation_status: RotationStatus
    last_rotation_attempted_at: _timestamp_pb2.Timestamp
    last_rotated_at: _timestamp_pb2.Timestamp
    last_rotation_job_id: str
    next_rotation_at: _timestamp_pb2.Timestamp
    is_last_rotation_manual: bool
    connection: Connection
    environment: Environment
    project_id: str
    folder: Folder
    rotate_at_utc: RotateAtUtc
    last_rotation_message: str
    type: RotationType
    parameters: RotationParameters
    secrets_mapping: SecretsMapping
    backend: Backend
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., description: _Optional[str] = ..., is_auto_rotation_enabled: bool = ..., active_index: _Optional[int] = ..., folder_id: _Optional[str] = ..., connection_id: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., rotation_interval: _Optional[int] = ..., rotation_status: _Optional[_Union[RotationStatus, str]] = ..., last_rotation_attempted_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_rotated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_rotation_job_id: _Optional[str] = ..., next_rotation_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., is_last_rotation_manual: bool = ..., connection: _Optional[_Union[Connection, _Mapping]] = ..., environment: _Optional[_Union[Environment, _Mapping]] = ..., project_id: _Optional[str] = ..., folder: _Optional[_Union[Folder, _Mapping]] = ..., rotate_at_utc: _Optional[_Union[RotateAtUtc, _Mapping]] = ..., last_rotation_message: _Optional[str] = ..., type: _Optional[_Union[RotationType, str]] = ..., parameters: _Optional[_Union[RotationParameters, _Mapping]] = ..., secrets_mapping: _Optional[_Union[SecretsMapping, _Mapping]] = ..., backend: _Optional[_Union[Backend, str]] = ...) -> None: ...

class Connection(_message.Message):
    __slots__ = ("app", "name", "id")
    APP_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    app: str
    name: str
    id: str
    def __init__(self, app: _Optional[str] = ..., name: _Optional[str] = ..., id: _Optional[str] = ...) -> None: ...

class Environment(_message.Message):
    __slots__ = ("slug", "name", "id")
    SLUG_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    slug: str
    name: str
    id: str
    def __init__(self, slug: _Optional[str] = ..., name: _Optional[str] = ..., id: _Optional[str] = ...) -> None: ...

class Folder(_message.Message):
    __slots__ = ("id", "path")
    ID_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    id: str
    path: str
    def __init__(self, id: _Optional[str] = ..., path: _Optional[str] = ...) -> None: ...

class RotateAtUtc(_message.Message):
    __slots__ = ("hours", "minutes")
    HOURS_FIELD_NUMBER: _ClassVar[int]
    MINUTES_FIELD_NUMBER: _ClassVar[int]
    hours: int
    minutes: int
    def __init__(self, hours: _Optional[int] = ..., minutes: _Optional[int] = ...) -> None: ...

class RotationParameters(_message.Message):
    __slots__ = ("postgres_credentials", "mysql_credentials", "mssql_credentials", "oracledb_credentials", "mongodb_credentials", "redis_credentials", "ldap_password", "unix_linux_local_account", "windows_local_account", "auth0_client_secret", "okta_client_secret", "azure_client_secret", "aws_iam_user_secret", "databricks_service_principal_secret")
    POSTGRES_CREDENTIALS_FIELD_NUMBER: _ClassVar[int]
    MYSQL_CREDENTIALS_FIELD_NUMBER: _ClassVar[int]
    MSSQL_CREDENTIALS_FIELD_NUMBER: _ClassVar[int]
    ORACLEDB_CREDENTIALS_FIELD_NUMBER: _ClassVar[int]
    MONGODB_CREDENTIALS_FIELD_NUMBER: _ClassVar[int]
    REDIS_CREDENTIALS_FIELD_NUMBER: _ClassVar[int]
    LDAP_PASSWORD_FIELD_NUMBER: _ClassVar[int]
    UNIX_LINUX_LOCAL_ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    WINDOWS_LOCAL_ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    AUTH0_CLIENT_SECRET_FIELD_NUMBER: _ClassVar[int]
    OKTA_CLIENT_SECRET_FIELD_NUMBER: _ClassVar[int]
    AZURE_CLIENT_SECRET_FIELD_NUMBER: _ClassVar[int]
    AWS_IAM_USER_SECRET_FIELD_NUMBER: _ClassVar[int]
    DATABRICKS_SERVICE_PRINCIPAL_SECRET_FIELD_NUMBER: _ClassVar[int]
    postgres_credentials: SqlCredentialsParameters
    mysql_credentials: SqlCredentialsParameters
    mssql_credentials: SqlCredentialsParameters
    oracledb_credentials: SqlCredentialsParameters
    mongodb_credentials: MongoDbCredentialsParameters
    redis_credentials: RedisCredentialsParameters
    ldap_password: LdapPasswordParameters
    unix_linux_local_account: LocalAccountParameters
    windows_local_account: LocalAccountParameters
    auth0_client_secret: ClientIdParameters
    okta_client_secret: ClientIdParameters
    azure_client_secret: AzureClientSecretParameters
    aws_iam_user_secret: AwsIamUserSecretParameters
    databricks_service_principal_secret: DatabricksServicePrincipalSecretParameters
    def __init__(self, postgres_credentials: _Optional[_Union[SqlCredentialsParameters, _Mapping]] = ..., mysql_credentials: _Optional[_Union[SqlCredentialsParameters, _Mapping]] = ..., mssql_credentials: _Optional[_Union[SqlCredentialsParameters, _Mapping]] = ..., oracledb_credentials: _Optional[_Union[SqlCredentialsParameters, _Mapping]] = ..., mongodb_credentials: _Optional[_Union[MongoDbCredentialsParameters, _Mapping]] = ..., redis_credentials: _Optional[_Union[RedisCredentialsParameters, _Mapping]] = ..., ldap_password: _Optional[_Union[LdapPasswordParameters, _Mapping]] = ..., unix_linux_local_account: _Optional[_Union[LocalAccountParameters, _Mapping]] = ..., windows_local_account: _Optional[_Union[LocalAccountParameters, _Mapping]] = ..., auth0_client_secret: _Optional[_Union[ClientIdParameters, _Mapping]] = ..., okta_client_secret: _Optional[_Union[ClientIdParameters, _Mapping]] = ..., azure_client_secret: _Optional[_Union[AzureClientSecretParameters, _Mapping]] = ..., aws_iam_user_secret: _Optional[_Union[AwsIamUserSecretParameters, _Mapping]] = ..., databricks_service_principal_secret: _Optional[_Union[DatabricksServicePrincipalSecretParameters, _Mapping]] = ...) -> None: ...

class PasswordRequirements(_message.Message):
    __slots__ = ("length", "required", "allowed_symbols")
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    REQUIRED_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_SYMBOLS_FIELD_NUMBER: _ClassVar[int]
    length: int
    required: RequiredCharacters
    allowed_symbols: str
    def __init__(self, length: _Optional[int] = ..., required: _Optional[_Union[RequiredCharacters, _Mapping]] = ..., allowed_symbols: _Optional[str] = ...) -> None: ...

class RequiredCharacters(_message.Message):
    __slots__ = ("lowercase", "uppercase", "digits", "symbols")
    LOWERCASE_FIELD_NUMBER: _ClassVar[int]
    UPPERCASE_FIELD_NUMBER: _ClassVar[int]
    DIGITS_FIELD_NUMBER: _ClassVar[int]
    SYMBOLS_FIELD_NUMBER: _ClassVar[int]
    lowercase: int
    uppercase: int
    digits: int
    symbols: int
    def __init__(self, lowercase: _Optional[int] = ..., uppercase: _Optional[int] = ..., digits: _Optional[int] = ..., symbols: _Optional[int] = ...) -> None: ...

class SqlCredentialsParameters(_message.Message):
    __slots__ = ("username1", "username2", "rotation_statement", "password_requirements")
    USERNAME1_FIELD_NUMBER: _ClassVar[int]
    USERNAME2_FIELD_NUMBER: _ClassVar[int]
    ROTATION_STATEMENT_FIELD_NUMBER: _ClassVar[int]
    PASSWORD_REQUIREMENTS_FIELD_NUMBER: _ClassVar[int]
    username1: str
    username2: str
    rotation_statement: str
    password_requirements: PasswordRequirements
    def __init__(self, username1: _Optional[str] = ..., username2: _Optional[str] = ..., rotation_statement: _Optional[str] = ..., password_requirements: _Optional[_Union[PasswordRequirements, _Mapping]] = ...) -> None: ...

class MongoDbCredentialsParameters(_message.Message):
    __slots__ = ("username1", "username2", "password_requirements")
    USERNAME1_FIELD_NUMBER: _ClassVar[int]
    USERNAME2_FIELD_NUMBER: _ClassVar[int]
    PASSWORD_REQUIREMENTS_FIELD_NUMBER: _ClassVar[int]
    username1: str
    username2: str
    password_requirements: PasswordRequirements
    def __init__(self, username1: _Optional[str] = ..., username2: _Optional[str] = ..., password_requirements: _Optional[_Union[PasswordRequirements, _Mapping]] = ...) -> None: ...

class RedisCredentialsParameters(_message.Message):
    __slots__ = ("permission_scope", "password_requirements")
    PERMISSION_SCOPE_FIELD_NUMBER: _ClassVar[int]
    PASSWORD_REQUIREMENTS_FIELD_NUMBER: _ClassVar[int]
    permission_scope: str
    password_requirements: PasswordRequirements
    def __init__(self, permission_scope: _Optional[str] = ..., password_requirements: _Optional[_Union[PasswordRequirements, _Mapping]] = ...) -> None: ...

class LdapPasswordParameters(_message.Message):
    __slots__ = ("dn", "rotation_method", "password_requirements")
    DN_FIELD_NUMBER: _ClassVar[int]
    ROTATION_METHOD_FIELD_NUMBER: _ClassVar[int]
    PASSWORD_REQUIREMENTS_FIELD_NUMBER: _ClassVar[int]
    dn: str
    rotation_method: str
    password_requirements: PasswordRequirements
    def __init__(self, dn: _Optional[str] = ..., rotation_method: _Optional[str] = ..., password_requirements: _Optional[_Union[PasswordRequirements, _Mapping]] = ...) -> None: ...

class LocalAccountParameters(_message.Message):
    __slots__ = ("username", "rotation_method", "password_requirements", "use_sudo")
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    ROTATION_METHOD_FIELD_NUMBER: _ClassVar[int]
    PASSWORD_REQUIREMENTS_FIELD_NUMBER: _ClassVar[int]
    USE_SUDO_FIELD_NUMBER: _ClassVar[int]
    username: str
    rotation_method: str
    password_requirements: PasswordRequirements
    use_sudo: bool
    def __init__(self, username: _Optional[str] = ..., rotation_method: _Optional[str] = ..., password_requirements: _Optional[_Union[PasswordRequirements, _Mapping]] = ..., use_sudo: bool = ...) -> None: ...

class ClientIdParameters(_message.Message):
    __slots__ = ("client_id",)
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    client_id: str
    def __init__(self, client_id: _Optional[str] = ...) -> None: ...

class AzureClientSecretParameters(_message.Message):
    __slots__ = ("object_id", "client_id", "app_name")
    OBJECT_ID_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    APP_NAME_FIELD_NUMBER: _ClassVar[int]
    object_id: str
    client_id: str
    app_name: str
    def __init__(self, object_id: _Optional[str] = ..., client_id: _Optional[str] = ..., app_name: _Optional[str] = ...) -> None: ...

class AwsIamUserSecretParameters(_message.Message):
    __slots__ = ("user_name", "region")
    USER_NAME_FIELD_NUMBER: _ClassVar[int]
    REGION_FIELD_NUMBER: _ClassVar[int]
    user_name: str
    region: str
    def __init__(self, user_name: _Optional[str] = ..., region: _Optional[str] = ...) -> None: ...

class DatabricksServicePrincipalSecretParameters(_message.Message):
    __slots__ = ("service_principal_id", "client_id", "service_principal_name")
    SERVICE_PRINCIPAL_ID_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    SERVICE_PRINCIPAL_NAME_FIELD_NUMBER: _ClassVar[int]
    service_principal_id: str
    client_id: str
    service_principal_name: str
    def __init__(self, service_principal_id: _Optional[str] = ..., client_id: _Optional[str] = ..., service_principal_name: _Optional[str] = ...) -> None: ...

class SecretsMapping(_message.Message):
    __slots__ = ("postgres_credentials", "mysql_credentials", "mssql_credentials", "oracledb_credentials", "mongodb_credentials", "redis_credentials", "ldap_password", "unix_linux_local_account", "windows_local_account", "auth0_client_secret", "okta_client_secret", "azure_client_secret", "aws_iam_user_secret", "databricks_service_principal_secret")
    POSTGRES_CREDENTIALS_FIELD_NUMBER: _ClassVar[int]
    MYSQL_CREDENTIALS_FIELD_NUMBER: _ClassVar[int]
    MSSQL_CREDENTIALS_FIELD_NUMBER: _ClassVar[int]
    ORACLEDB_CREDENTIALS_FIELD_NUMBER: _ClassVar[int]
    MONGODB_CREDENTIALS_FIELD_NUMBER: _ClassVar[int]
    REDIS_CREDENTIALS_FIELD_NUMBER: _ClassVar[int]
    LDAP_PASSWORD_FIELD_NUMBER: _ClassVar[int]
    UNIX_LINUX_LOCAL_ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    WINDOWS_LOCAL_ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    AUTH0_CLIENT_SECRET_FIELD_NUMBER: _ClassVar[int]
    OKTA_CLIENT_SECRET_FIELD_NUMBER: _ClassVar[int]
    AZURE_CLIENT_SECRET_FIELD_NUMBER: _ClassVar[int]
    AWS_IAM_USER_SECRET_FIELD_NUMBER: _ClassVar[int]
    DATABRICKS_SERVICE_PRINCIPAL_SECRET_FIELD_NUMBER: _ClassVar[int]
    postgres_credentials: UsernamePasswordMapping
    mysql_credentials: UsernamePasswordMapping
    mssql_credentials: UsernamePasswordMapping
    oracledb_credentials: UsernamePasswordMapping
    mongodb_credentials: UsernamePasswordMapping
    redis_credentials: UsernamePasswordMapping
    ldap_password: LdapPasswordMapping
    unix_linux_local_account: UsernamePasswordMapping
    windows_local_account: UsernamePasswordMapping
    auth0_client_secret: ClientSecretMapping
    okta_client_secret: ClientSecretMapping
    azure_client_secret: ClientSecretMapping
    aws_iam_user_secret: AwsIamUserSecretMapping
    databricks_service_principal_secret: ClientSecretMapping
    def __init__(self, postgres_credentials: _Optional[_Union[UsernamePasswordMapping, _Mapping]] = ..., mysql_credentials: _Optional[_Union[UsernamePasswordMapping, _Mapping]] = ..., mssql_credentials: _Optional[_Union[UsernamePasswordMapping, _Mapping]] = ..., oracledb_credentials: _Optional[_Union[UsernamePasswordMapping, _Mapping]] = ..., mongodb_credentials: _Optional[_Union[UsernamePasswordMapping, _Mapping]] = ..., redis_credentials: _Optional[_Union[UsernamePasswordMapping, _Mapping]] = ..., ldap_password: _Optional[_Union[LdapPasswordMapping, _Mapping]] = ..., unix_linux_local_account: _Optional[_Union[UsernamePasswordMapping, _Mapping]] = ..., windows_local_account: _Optional[_Union[UsernamePasswordMapping, _Mapping]] = ..., auth0_client_secret: _Optional[_Union[ClientSecretMapping, _Mapping]] = ..., okta_client_secret: _Optional[_Union[ClientSecretMapping, _Mapping]] = ..., azure_client_secret: _Optional[_Union[ClientSecretMapping, _Mapping]] = ..., aws_iam_user_secret: _Optional[_Union[AwsIamUserSecretMapping, _Mapping]] = ..., databricks_service_principal_secret: _Optional[_Union[ClientSecretMapping, _Mapping]] = ...) -> None: ...

class UsernamePasswordMapping(_message.Message):
    __slots__ = ("username", "password")
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    PASSWORD_FIELD_NUMBER: _ClassVar[int]
    username: str
    password: str
    def __init__(self, username: _Optional[str] = ..., password: _Optional[str] = ...) -> None: ...

class LdapPasswordMapping(_message.Message):
    __slots__ = ("dn", "password")
    DN_FIELD_NUMBER: _ClassVar[int]
    PASSWORD_FIELD_NUMBER: _ClassVar[int]
    dn: str
    password: str
    def __init__(self, dn: _Optional[str] = ..., password: _Optional[str] = ...) -> None: ...

class ClientSecretMapping(_message.Message):
    __slots__ = ("client_id", "client_secret")
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    CLIENT_SECRET_FIELD_NUMBER: _ClassVar[int]
    client_id: str
    client_secret: str
    def __init__(self, client_id: _Optional[str] = ..., client_secret: _Optional[str] = ...) -> None: ...

class AwsIamUserSecretMapping(_message.Message):
    __slots__ = ("access_key_id", "secret_access_key")
    ACCESS_KEY_ID_FIELD_NUMBER: _ClassVar[int]
    SECRET_ACCESS_KEY_FIELD_NUMBER: _ClassVar[int]
    access_key_id: str
    secret_access_key: str
    def __init__(self, access_key_id: _Optional[str] = ..., secret_access_key: _Optional[str] = ...) -> None: ...

class GeneratedCredential(_message.Message):
    __slots__ = ("postgres_credentials", "mysql_credentials", "mssql_credentials", "oracledb_credentials", "mongodb_credentials", "redis_credentials", "ldap_password", "unix_linux_local_account", "windows_local_account", "auth0_client_secret", "okta_client_secret", "azure_client_secret", "aws_iam_user_secret", "databricks_service_principal_secret")
    POSTGRES_CREDENTIALS_FIELD_NUMBER: _ClassVar[int]
    MYSQL_CREDENTIALS_FIELD_NUMBER: _ClassVar[int]
    MSSQL_CREDENTIALS_FIELD_NUMBER: _ClassVar[int]
    ORACLEDB_CREDENTIALS_FIELD_NUMBER: _ClassVar[int]
    MONGODB_CREDENTIALS_FIELD_NUMBER: _ClassVar[int]
    REDIS_CREDENTIALS_FIELD_NUMBER: _ClassVar[int]
    LDAP_PASSWORD_FIELD_NUMBER: _ClassVar[int]
    UNIX_LINUX_LOCAL_ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    WINDOWS_LOCAL_ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    AUTH0_CLIENT_SECRET_FIELD_NUMBER: _ClassVar[int]
    OKTA_CLIENT_SECRET_FIELD_NUMBER: _ClassVar[int]
    AZURE_CLIENT_SECRET_FIELD_NUMBER: _ClassVar[int]
    AWS_IAM_USER_SECRET_FIELD_NUMBER: _ClassVar[int]
    DATABRICKS_SERVICE_PRINCIPAL_SECRET_FIELD_NUMBER: _ClassVar[int]
    postgres_credentials: UsernamePasswordCredential
    mysql_credentials: UsernamePasswordCredential
    mssql_credentials: UsernamePasswordCredential
    oracledb_credentials: UsernamePasswordCredential
    mongodb_credentials: UsernamePasswordCredential
    redis_credentials: UsernamePasswordCredential
    ldap_password: LdapPasswordCredential
    unix_linux_local_account: UsernamePasswordCredential
    windows_local_account: UsernamePasswordCredential
    auth0_client_secret: Auth0ClientSecretCredential
    okta_client_secret: ClientSecretWithIdCredential
    azure_client_secret: AzureClientSecretCredential
    aws_iam_user_secret: AwsIamUserSecretCredential
    databricks_service_principal_secret: ClientSecretWithIdCredential
    def __init__(self, postgres_credentials: _Optional[_Union[UsernamePasswordCredential, _Mapping]] = ..., mysql_credentials: _Optional[_Union[UsernamePasswordCredential, _Mapping]] = ..., mssql_credentials: _Optional[_Union[UsernamePasswordCredential, _Mapping]] = ..., oracledb_credentials: _Optional[_Union[UsernamePasswordCredential, _Mapping]] = ..., mongodb_credentials: _Optional[_Union[UsernamePasswordCredential, _Mapping]] = ..., redis_credentials: _Optional[_Union[UsernamePasswordCredential, _Mapping]] = ..., ldap_password: _Optional[_Union[LdapPasswordCredential, _Mapping]] = ..., unix_linux_local_account: _Optional[_Union[UsernamePasswordCredential, _Mapping]] = ..., windows_local_account: _Optional[_Union[UsernamePasswordCredential, _Mapping]] = ..., auth0_client_secret: _Optional[_Union[Auth0ClientSecretCredential, _Mapping]] = ..., okta_client_secret: _Optional[_Union[ClientSecretWithIdCredential, _Mapping]] = ..., azure_client_secret: _Optional[_Union[AzureClientSecretCredential, _Mapping]] = ..., aws_iam_user_secret: _Optional[_Union[AwsIamUserSecretCredential, _Mapping]] = ..., databricks_service_principal_secret: _Optional[_Union[ClientSecretWithIdCredential, _Mapping]] = ...) -> None: ...

class UsernamePasswordCredential(_message.Message):
    __slots__ = ("username", "password")
    USERNAME_FIELD_NUMBER: _ClassVar[int]
    PASSWORD_FIELD_NUMBER: _ClassVar[int]
    username: str
    password: str
    def __init__(self, username: _Optional[str] = ..., password: _Optional[str] = ...) -> None: ...

class LdapPasswordCredential(_message.Message):
    __slots__ = ("dn", "password")
    DN_FIELD_NUMBER: _ClassVar[int]
    PASSWORD_FIELD_NUMBER: _ClassVar[int]
    dn: str
    password: str
    def __init__(self, dn: _Optional[str] = ..., password: _Optional[str] = ...) -> None: ...

class Auth0ClientSecretCredential(_message.Message):
    __slots__ = ("client_id", "client_secret")
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    CLIENT_SECRET_FIELD_NUMBER: _ClassVar[int]
    client_id: str
    client_secret: str
    def __init__(self, client_id: _Optional[str] = ..., client_secret: _Optional[str] = ...) -> None: ...

class ClientSecretWithIdCredential(_message.Message):
    __slots__ = ("client_id", "client_secret", "secret_id")
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    CLIENT_SECRET_FIELD_NUMBER: _ClassVar[int]
    SECRET_ID_FIELD_NUMBER: _ClassVar[int]
    client_id: str
    client_secret: str
    secret_id: str
    def __init__(self, client_id: _Optional[str] = ..., client_secret: _Optional[str] = ..., secret_id: _Optional[str] = ...) -> None: ...

class AzureClientSecretCredential(_message.Message):
    __slots__ = ("client_id", "client_secret", "key_id")
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    CLIENT_SECRET_FIELD_NUMBER: _ClassVar[int]
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    client_id: str
    client_secret: str
    key_id: str
    def __init__(self, client_id: _Optional[str] = ..., client_secret: _Optional[str] = ..., key_id: _Optional[str] = ...) -> None: ...

class AwsIamUserSecretCredential(_message.Message):
    __slots__ = ("access_key_id", "secret_access_key")
    ACCESS_KEY_ID_FIELD_NUMBER: _ClassVar[int]
    SECRET_ACCESS_KEY_FIELD_NUMBER: _ClassVar[int]
    access_key_id: str
    secret_access_key: str
    def __init__(self, access_key_id: _Optional[str] = ..., secret_access_key: _Optional[str] = ...) -> None: ...

class ConfirmCredentialInUseRequest(_message.Message):
    __slots__ = ("type", "rotation_id", "version", "consumer")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    ROTATION_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CONSUMER_FIELD_NUMBER: _ClassVar[int]
    type: RotationType
    rotation_id: str
    version: int
    consumer: str
    def __init__(self, type: _Optional[_Union[RotationType, str]] = ..., rotation_id: _Optional[str] = ..., version: _Optional[int] = ..., consumer: _Optional[str] = ...) -> None: ...

class ConfirmCredentialInUseResponse(_message.Message):
    __slots__ = ("confirmation", "unconfirmed_consumers")
    CONFIRMATION_FIELD_NUMBER: _ClassVar[int]
    UNCONFIRMED_CONSUMERS_FIELD_NUMBER: _ClassVar[int]
    confirmation: ConsumerConfirmation
    unconfirmed_consumers: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, confirmation: _Optional[_Union[ConsumerConfirmation, _Mapping]] = ..., unconfirmed_consumers: _Optional[_Iterable[str]] = ...) -> None: ...
