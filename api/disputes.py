"""The multipart form of a meter reading dispute, shared by buyers and sellers."""

import functools

from flask import current_app, request

from services.errors import Invalid

DISPUTE_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["note", "photo"],
                "properties": {
                    "note": {
                        "type": "string",
                        "minLength": 1,
                        "maxLength": 500,
                        "description": "What is wrong with the reading",
                    },
                    "photo": {
                        "type": "string",
                        "format": "binary",
                        "description": "A JPEG or PNG photo of the meter",
                    },
                },
            }
        }
    },
}


def read_form():
    """Return the note and photo bytes of a multipart dispute, or raise 422."""
    problems = {}
    unknown = (set(request.form) - {"note"}) | (set(request.files) - {"photo"})
    for name in sorted(unknown):
        problems[name] = ["Unknown field."]
    note = request.form.get("note")
    if note is None:
        problems["note"] = ["Missing data for required field."]
    photo = request.files.get("photo")
    if photo is None:
        problems["photo"] = ["Missing data for required field."]
    if problems:
        raise Invalid(
            "validation_failed",
            "请以 multipart/form-data 提交 note 与 photo 两项。",
            errors={"form": problems},
        )
    return note, photo.read()


def photo_sized(view):
    """Allow a photo up to METER_PHOTO_MAX_BYTES, before anything reads the body."""

    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        request.max_content_length = current_app.config["METER_PHOTO_MAX_BYTES"]
        return view(*args, **kwargs)

    return wrapper
