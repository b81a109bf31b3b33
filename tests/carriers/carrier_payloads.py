"""Response bodies in the shapes the carriers document, written for the tests.

Field names follow DHL's Shipment Tracking OpenAPI example, UPS's
``Tracking.yaml``, FedEx's Track API reference, USPS's Tracking v3 response
and 17TRACK's v2.2 ``gettrackinfo`` documentation. Values are invented.
"""

from __future__ import annotations

from typing import Any

TOKEN = {"access_token": "token-1", "token_type": "Bearer", "expires_in": 3599}


def dhl_event(timestamp: str, code: str, description: str) -> dict[str, Any]:
    return {
        "timestamp": timestamp,
        "location": {
            "address": {"addressLocality": "Bonn", "countryCode": "DE"},
        },
        "statusCode": code,
        "status": code.upper(),
        "description": description,
    }


def dhl_shipments(number: str = "00340434161094042557") -> dict[str, Any]:
    latest = dhl_event(
        "2026-09-20T09:15:00+02:00",
        "transit",
        "The shipment has been loaded onto the delivery vehicle",
    )
    return {
        "shipments": [
            {
                "id": number,
                "service": "parcel-de",
                "origin": {"address": {"countryCode": "DE"}},
                "destination": {"address": {"countryCode": "DE"}},
                "status": latest,
                "estimatedTimeOfDelivery": "2026-09-20T16:00:00+02:00",
                "details": {"product": {"productName": "DHL PAKET"}},
                "events": [
                    latest,
                    dhl_event(
                        "2026-09-19T18:02:00+02:00",
                        "transit",
                        "The shipment has been processed in the parcel center",
                    ),
                    dhl_event(
                        "2026-09-18T14:00:00+02:00",
                        "pre-transit",
                        "The instruction data for this shipment have been "
                        "provided by the sender to DHL electronically",
                    ),
                ],
            }
        ]
    }


def ups_activity(
    gmt: tuple[str, str], status_type: str, code: str, description: str
) -> dict[str, Any]:
    return {
        "date": gmt[0],
        "time": "071356",
        "gmtDate": gmt[0],
        "gmtTime": gmt[1],
        "gmtOffset": "-04:00",
        "location": {
            "address": {"city": "Wayne", "stateProvince": "NJ", "countryCode": "US"},
            "slic": "8566",
        },
        "status": {
            "type": status_type,
            "code": code,
            "description": description,
            "statusCode": "005",
        },
    }


def ups_package(number: str, activity: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "trackingNumber": number,
        "currentStatus": activity[0]["status"] if activity else None,
        "activity": activity,
        "deliveryDate": [{"type": "SDD", "date": "20260921"}],
        "packageCount": 1,
    }


def ups_track(number: str = "1Z023E2X0214323462") -> dict[str, Any]:
    activity = [
        ups_activity(("20260920", "111356"), "I", "OT", "Out For Delivery Today"),
        ups_activity(("20260919", "74700"), "I", "AR", "Arrived at Facility"),
        ups_activity(
            ("20260918", "160000"),
            "M",
            "MP",
            "Shipper created a label, UPS has not received the package yet.",
        ),
    ]
    return {
        "trackResponse": {
            "shipment": [
                {"inquiryNumber": number, "package": [ups_package(number, activity)]}
            ]
        }
    }


def fedex_scan(date: str, code: str, description: str) -> dict[str, Any]:
    return {
        "date": date,
        "eventType": code,
        "eventDescription": description,
        "exceptionCode": "",
        "exceptionDescription": "",
        "scanLocation": {
            "city": "MEMPHIS",
            "stateOrProvinceCode": "TN",
            "countryCode": "US",
        },
        "derivedStatusCode": code,
    }


def fedex_track_result(number: str) -> dict[str, Any]:
    return {
        "trackingNumberInfo": {"trackingNumber": number, "carrierCode": "FDXE"},
        "latestStatusDetail": {
            "code": "DL",
            "derivedCode": "DL",
            "statusByLocale": "Delivered",
            "description": "Delivered",
        },
        "dateAndTimes": [
            {"type": "ESTIMATED_DELIVERY", "dateTime": "2026-09-20T00:00:00-06:00"},
            {"type": "ACTUAL_DELIVERY", "dateTime": "2026-09-20T13:02:00-07:00"},
        ],
        "scanEvents": [
            fedex_scan("2026-09-20T13:02:00-07:00", "DL", "Delivered"),
            fedex_scan(
                "2026-09-20T08:10:00-07:00", "OD", "On FedEx vehicle for delivery"
            ),
            fedex_scan("2026-09-19T10:00:00-05:00", "PU", "Picked up"),
            fedex_scan(
                "2026-09-18T09:00:00-05:00", "OC", "Shipment information sent to FedEx"
            ),
        ],
    }


def fedex_not_found(number: str) -> dict[str, Any]:
    return {
        "trackingNumberInfo": {"trackingNumber": number, "carrierCode": ""},
        "error": {
            "code": "TRACKING.TRACKINGNUMBER.NOTFOUND",
            "message": "Tracking number cannot be found. Please correct the "
            "tracking number and try again.",
        },
    }


def fedex_track(*entries: tuple[str, dict[str, Any]]) -> dict[str, Any]:
    return {
        "transactionId": "624deea6-b709-470c-8c39-4b5511281492",
        "output": {
            "completeTrackResults": [
                {"trackingNumber": number, "trackResults": [result]}
                for number, result in entries
            ]
        },
    }


def usps_event(gmt: str, code: str, text: str) -> dict[str, Any]:
    return {
        "eventType": text,
        "eventTimestamp": "2026-09-20T14:03:00",
        "GMTTimestamp": gmt,
        "GMTOffset": "-07:00",
        "eventCountry": None,
        "eventCity": "PHOENIX",
        "eventState": "AZ",
        "eventZIP": "85001",
        "firm": None,
        "name": None,
        "authorizedAgent": False,
        "eventCode": code,
    }


def usps_tracking(number: str = "9400111899223817576010") -> dict[str, Any]:
    return {
        "trackingNumber": number,
        "mailClass": "USPS Ground Advantage",
        "destinationCity": "PHOENIX",
        "destinationState": "AZ",
        "status": "Delivered, Parcel Locker",
        "statusCategory": "Delivered",
        "statusSummary": "Your item was delivered to a parcel locker at 2:03 pm "
        "on September 20, 2026 in PHOENIX, AZ 85001.",
        "expectedDeliveryTimeStamp": "2026-09-20T21:00:00-07:00",
        "trackingEvents": [
            usps_event("2026-09-20T21:03:00Z", "01", "Delivered, Parcel Locker"),
            usps_event("2026-09-20T14:10:00Z", "OF", "Out for Delivery"),
            usps_event("2026-09-20T11:00:00Z", "07", "Arrived at Post Office"),
            usps_event("2026-09-18T20:00:00Z", "03", "USPS in possession of item"),
        ],
    }


def seventeentrack_event(
    time_utc: str, sub_status: str, description: str
) -> dict[str, Any]:
    return {
        "time_iso": time_utc.replace("Z", "+00:00"),
        "time_utc": time_utc,
        "time_raw": {"date": time_utc[:10], "time": time_utc[11:19], "timezone": None},
        "description": description,
        "location": "Neuenstein, DE",
        "stage": None,
        "sub_status": sub_status,
        "address": {"country": "DE", "state": None, "city": "Neuenstein"},
    }


def seventeentrack_accepted(
    number: str, status: str, sub_status: str, events: list[dict[str, Any]]
) -> dict[str, Any]:
    return {
        "number": number,
        "carrier": 100005,
        "param": None,
        "tag": "",
        "track_info": {
            "shipping_info": {"shipper_address": {}, "recipient_address": {}},
            "latest_status": {
                "status": status,
                "sub_status": sub_status,
                "sub_status_descr": None,
            },
            "latest_event": events[0] if events else None,
            "time_metrics": {
                "days_after_order": 2,
                "estimated_delivery_date": {
                    "source": "Official",
                    "from": "2026-09-22T00:00:00+02:00",
                    "to": "2026-09-23T00:00:00+02:00",
                },
            },
            "milestone": [],
            "misc_info": {},
            "tracking": {
                "providers_hash": 1234,
                "providers": [
                    {
                        "provider": {"key": 100005, "name": "GLS"},
                        "latest_sync_status": "Success",
                        "events": events,
                    }
                ],
            },
        },
    }


def seventeentrack_in_transit(number: str = "ZA123456789") -> dict[str, Any]:
    return seventeentrack_accepted(
        number,
        "InTransit",
        "InTransit_Arrival",
        [
            seventeentrack_event(
                "2026-09-20T06:52:00Z",
                "InTransit_Arrival",
                "The parcel has reached the parcel center.",
            ),
            seventeentrack_event(
                "2026-09-19T15:10:00Z",
                "InTransit_PickedUp",
                "The parcel has been picked up.",
            ),
        ],
    )


def seventeentrack_answer(
    accepted: list[dict[str, Any]], rejected: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    return {"code": 0, "data": {"accepted": accepted, "rejected": rejected or []}}


def seventeentrack_rejected(number: str, code: int, message: str) -> dict[str, Any]:
    return {"number": number, "error": {"code": code, "message": message}}
