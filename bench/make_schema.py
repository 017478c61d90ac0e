#!/usr/bin/env python3
"""Emit bench/users.schema.json: the JSON Schema pydantic v2 produces for the
benchmark's User model. Run inside bench/.venv (needs pydantic[email]).

    bench/.venv/bin/python bench/make_schema.py [OUT]
"""
import json
import sys
from datetime import datetime
from enum import Enum
from pathlib import Path
from uuid import UUID

from pydantic import BaseModel, Field

try:
    from pydantic import EmailStr
    import email_validator  # noqa: F401  (EmailStr needs it at schema time)
    EMAIL_TYPE = EmailStr
except ImportError:  # pragma: no cover - fallback documented in the brief
    from typing import Annotated
    EMAIL_TYPE = Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")]


class Country(str, Enum):
    US = "US"
    DE = "DE"
    FR = "FR"
    GB = "GB"
    ES = "ES"
    IT = "IT"
    JP = "JP"
    BR = "BR"


class User(BaseModel):
    user_id: UUID
    username: str = Field(min_length=3, max_length=20, pattern=r"^[a-z0-9]+$")
    email: EMAIL_TYPE
    age: int = Field(ge=0, le=120)
    signup_ts: datetime
    country: Country
    score: float = Field(ge=0, le=1000)
    is_active: bool


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).with_name("users.schema.json")
    out.write_text(json.dumps(User.model_json_schema(), indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
