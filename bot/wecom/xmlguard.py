"""Vet untrusted XML with defusedxml before any other parser sees it."""

from __future__ import annotations

from xml.etree.ElementTree import Element, ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

from bot.errors import CallbackError


def safe_parse(xml: str | bytes, *, what: str) -> Element:
    """Parse XML refusing DTDs, entities and external references; raise CallbackError(400)."""
    try:
        # forbid_dtd: WeCom never sends a DOCTYPE, so any DOCTYPE is an attack or garbage.
        root: Element = fromstring(xml, forbid_dtd=True, forbid_entities=True, forbid_external=True)
        return root
    except DefusedXmlException as exc:
        raise CallbackError(
            f"{what}: hostile XML refused ({type(exc).__name__})", status=400
        ) from None
    except (ParseError, ValueError) as exc:
        raise CallbackError(f"{what}: malformed XML ({exc})", status=400) from None
