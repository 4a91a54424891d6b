"""The demo tenant, built deterministically from ``random.Random(seed)``.

Constants and personas are the contract in docs/DEVNOTES.md. Persona object ids do not depend on
the seed or the number of users: ``persona_oid(upn) = uuid5(NAMESPACE_DNS, upn)``.

``build_tenant`` creates people (with a manager tree, a few disabled accounts and a guest), groups
(one per department, helpdesk groups with nesting, a protected group and a role-assignable group),
the portal's app registration and its app role assignments, then calls
``entra_emulator.seed_security.seed_security(tenant, rng, now)`` when that module exists (methods,
MFA state, directory roles, PIM, audit history). 100,000 users take a few seconds.
"""

from __future__ import annotations

import importlib
import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from entra_emulator.tenant import AppRegistration, ClientCertificate, Tenant

TENANT_ID = "8f2d1c3a-5b6e-4f70-9a81-2c3d4e5f6a7b"
CLIENT_ID = "3c1e9f2a-7d4b-4e6a-8f1c-0a9b8c7d6e5f"
CLIENT_SECRET = "demo-portal-secret-not-for-production"
DOMAIN = "contoso-demo.onmicrosoft.com"
TENANT_DISPLAY_NAME = "Contoso Demo"
DEFAULT_SEED = 20260101

# A second, deliberately weak app: it may read users and nothing else (tests of 403 answers).
READER_CLIENT_ID = "5b7a2c1d-0e3f-4a6b-9c8d-1e2f3a4b5c6d"
READER_CLIENT_SECRET = "demo-reader-secret-not-for-production"

DEFAULT_REDIRECT_URIS = (
    "http://127.0.0.1:*/oauth2/callback",
    "http://localhost:*/oauth2/callback",
)

APP_ROLE_VALUES = ("Helpdesk.Agent", "Helpdesk.Lead", "Helpdesk.Admin", "Helpdesk.Responder")

# Application permissions granted to the portal app (admin consent): exactly the least it needs,
# as `manage.py tenant_check` derives it from the portal's Graph operations
# (preflight/permissions.py), so the demo and the tests run with a least-privileged app.
PORTAL_APPLICATION_PERMISSIONS = frozenset(
    {
        "User.Read.All",
        # https://learn.microsoft.com/graph/api/user-revokesigninsessions (least privileged)
        "User.RevokeSessions.All",
        "GroupMember.Read.All",
        "UserAuthenticationMethod.ReadWrite.All",
        "Policy.ReadWrite.AuthenticationMethod",
        # also allows PIM's schedule requests (rbacapplication-post-roleeligibilityschedulerequests)
        "RoleManagement.ReadWrite.Directory",
        "AuditLog.Read.All",
        "Application.Read.All",  # who holds the portal's app roles (/roles/)
    }
)
# Delegated permissions consented for the portal (the ``scp`` of a delegated Graph token).
PORTAL_DELEGATED_PERMISSIONS = frozenset(
    {
        "User.Read",
        "User.Read.All",
        "User.ReadWrite.All",
        "GroupMember.Read.All",
        "UserAuthenticationMethod.ReadWrite.All",
        "Policy.Read.All",
        "Policy.ReadWrite.AuthenticationMethod",
        "RoleManagement.ReadWrite.Directory",
        "RoleEligibilitySchedule.ReadWrite.Directory",
        "AuditLog.Read.All",
        "Application.Read.All",  # who holds the portal's app roles (/roles/)
    }
)

# upn prefix -> (given name, surname, job title, app roles, directory roles seeded by E2)
_PERSONA_TABLE: dict[str, tuple[str, str, str, tuple[str, ...], tuple[str, ...]]] = {
    "ada.agent": ("Ada", "Agent", "Service Desk Analyst", ("Helpdesk.Agent",), ()),
    "aaron.agent": (
        "Aaron",
        "Agent",
        "Senior Service Desk Analyst",
        ("Helpdesk.Agent",),
        ("Privileged Authentication Administrator",),
    ),
    "leo.lead": ("Leo", "Lead", "Service Desk Team Lead", ("Helpdesk.Lead",), ()),
    "lena.lead": ("Lena", "Lead", "Service Desk Team Lead", ("Helpdesk.Lead",), ()),
    "ana.admin": (
        "Ana",
        "Admin",
        "Identity Administrator",
        ("Helpdesk.Admin",),
        ("Privileged Role Administrator",),
    ),
    "abel.admin": (
        "Abel",
        "Admin",
        "Identity Administrator",
        ("Helpdesk.Admin",),
        ("Privileged Role Administrator",),
    ),
    "otto.outsider": ("Otto", "Outsider", "Accountant", (), ()),
    "sam.standard": ("Sam", "Standard", "Sales Representative", (), ()),
    "priya.privileged": (
        "Priya",
        "Privileged",
        "Security Engineer",
        (),
        ("Authentication Administrator",),
    ),
    # Incident response (issue 14): starts bulk operations, holds no directory role.
    "rita.responder": (
        "Rita",
        "Responder",
        "Security Operations Analyst",
        ("Helpdesk.Responder",),
        (),
    ),
}
_PERSONA_DEPARTMENTS = {
    "otto.outsider": "Finance",
    "sam.standard": "Sales",
    "priya.privileged": "Security",
    "rita.responder": "Security",
}


def persona_oid(upn: str) -> str:
    """The fixed object id of a persona (or any seeded name): uuid5(NAMESPACE_DNS, upn)."""
    return str(uuid.uuid5(uuid.NAMESPACE_DNS, upn.lower()))


def stable_id(kind: str, name: str) -> str:
    """A fixed id for a named seeded object (group, app role, service principal)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"https://{DOMAIN}/{kind}/{name}"))


PERSONAS: dict[str, dict[str, Any]] = {
    prefix: {
        "id": persona_oid(f"{prefix}@{DOMAIN}"),
        "upn": f"{prefix}@{DOMAIN}",
        "displayName": f"{given} {surname}",
        "app_roles": list(app_roles),
        "directory_roles": list(directory_roles),
    }
    for prefix, (given, surname, _title, app_roles, directory_roles) in _PERSONA_TABLE.items()
}

GUEST_UPN = f"gina.guest_fabrikam.example#EXT#@{DOMAIN}"
GUEST_ID = persona_oid(GUEST_UPN)

# Groups with fixed ids: name -> (description, role-assignable)
ROLE_ASSIGNABLE_GROUP = "Identity Tier 0 Operators"
PROTECTED_GROUP = "Executives"
HELPDESK_STAFF_GROUP = "Helpdesk Staff"
HELPDESK_LEADS_GROUP = "Helpdesk Leads"
# The incident of the bulk operations' demo (issue 14): the people who clicked a phishing link.
PHISHING_GROUP = "Phishing campaign 2026-12"
PHISHING_NESTED_GROUP = "Phishing campaign 2026-12: late reports"
PHISHING_DIRECT_STANDARD = 30  # standard people directly in the group
PHISHING_NESTED_STANDARD = 3  # standard people only in the nested group
GROUP_IDS: dict[str, str] = {
    name: stable_id("groups", name)
    for name in (
        ROLE_ASSIGNABLE_GROUP,
        PROTECTED_GROUP,
        HELPDESK_STAFF_GROUP,
        HELPDESK_LEADS_GROUP,
        PHISHING_GROUP,
        PHISHING_NESTED_GROUP,
    )
}

_FIRST_NAMES = (
    "Olivia",
    "Liam",
    "Emma",
    "Noah",
    "Amelia",
    "Oliver",
    "Sophia",
    "Elijah",
    "Isabella",
    "James",
    "Mia",
    "William",
    "Charlotte",
    "Benjamin",
    "Harper",
    "Lucas",
    "Evelyn",
    "Henry",
    "Abigail",
    "Theodore",
    "Emily",
    "Jack",
    "Ella",
    "Levi",
    "Elizabeth",
    "Alexander",
    "Camila",
    "Jackson",
    "Luna",
    "Mateo",
    "Sofia",
    "Daniel",
    "Avery",
    "Michael",
    "Mila",
    "Mason",
    "Aria",
    "Sebastian",
    "Scarlett",
    "Ethan",
    "Penelope",
    "Logan",
    "Layla",
    "Owen",
    "Chloe",
    "Samuel",
    "Victoria",
    "Jacob",
    "Madison",
    "Asher",
    "Eleanor",
    "Aiden",
    "Grace",
    "John",
    "Nora",
    "Joseph",
    "Riley",
    "Wyatt",
    "Zoey",
    "David",
    "Hannah",
    "Leo",
    "Hazel",
    "Luke",
    "Lily",
    "Julian",
    "Ellie",
    "Hudson",
    "Violet",
    "Grayson",
    "Lillian",
    "Matthew",
    "Zoe",
    "Ezra",
    "Stella",
    "Gabriel",
    "Aurora",
    "Carter",
    "Natalie",
    "Isaac",
    "Emilia",
    "Jayden",
    "Everly",
    "Anthony",
    "Leah",
    "Aisha",
    "Kenji",
    "Priyanka",
    "Mohammed",
    "Fatima",
    "Wei",
    "Ingrid",
    "Dmitri",
    "Chiara",
    "Tomás",
    "Zanele",
    "Björn",
    "Siobhán",
    "Nguyen",
    "Yusuf",
    "Ananya",
    "Mateus",
    "Ayumi",
)
_SURNAMES = (
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Garcia",
    "Miller",
    "Davis",
    "Rodriguez",
    "Martinez",
    "Hernandez",
    "Lopez",
    "Gonzalez",
    "Wilson",
    "Anderson",
    "Thomas",
    "Taylor",
    "Moore",
    "Jackson",
    "Martin",
    "Lee",
    "Perez",
    "Thompson",
    "White",
    "Harris",
    "Sanchez",
    "Clark",
    "Ramirez",
    "Lewis",
    "Robinson",
    "Walker",
    "Young",
    "Allen",
    "King",
    "Wright",
    "Scott",
    "Torres",
    "Nguyen",
    "Hill",
    "Flores",
    "Green",
    "Adams",
    "Nelson",
    "Baker",
    "Hall",
    "Rivera",
    "Campbell",
    "Mitchell",
    "Carter",
    "Roberts",
    "Okafor",
    "Tanaka",
    "Kowalski",
    "Novak",
    "Rossi",
    "Müller",
    "Schmidt",
    "Dubois",
    "Lefebvre",
    "Jensen",
    "Larsen",
    "Haddad",
    "Khan",
    "Patel",
    "Singh",
    "Sharma",
    "Chen",
    "Wang",
    "Kim",
    "Park",
    "Sato",
    "Suzuki",
    "O'Brien",
    "O'Connor",
    "Murphy",
    "Kelly",
    "Byrne",
    "Fitzgerald",
    "Andersson",
    "Nielsen",
    "Costa",
    "Silva",
    "Santos",
    "Ivanova",
    "Petrov",
    "Mensah",
    "Abebe",
    "Dlamini",
    "Ferreira",
)
_DEPARTMENTS: dict[str, tuple[str, ...]] = {
    "Sales": ("Account Executive", "Sales Representative", "Sales Manager", "Sales Engineer"),
    "Marketing": ("Marketing Specialist", "Content Strategist", "Brand Manager"),
    "Engineering": (
        "Software Engineer",
        "Senior Software Engineer",
        "Engineering Manager",
        "Site Reliability Engineer",
        "QA Engineer",
    ),
    "Finance": ("Accountant", "Financial Analyst", "Controller", "Payroll Specialist"),
    "Human Resources": ("HR Business Partner", "Recruiter", "HR Coordinator"),
    "Legal": ("Counsel", "Paralegal", "Compliance Officer"),
    "Operations": ("Operations Analyst", "Logistics Coordinator", "Facilities Manager"),
    "Customer Support": ("Support Engineer", "Customer Success Manager", "Support Agent"),
    "IT": (
        "Systems Administrator",
        "Network Engineer",
        "IT Service Desk Analyst",
        "Service Desk Analyst",
    ),
    "Security": ("Security Analyst", "Security Engineer", "CISO Office Analyst"),
}
_OFFICES = ("London", "Manchester", "Dublin", "Amsterdam", "Berlin", "Lisbon", "Remote")


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _make_user(
    *,
    user_id: str,
    given: str,
    surname: str,
    upn: str,
    mail: str | None,
    department: str,
    job_title: str,
    created: datetime,
    enabled: bool = True,
    user_type: str = "Member",
    office: str = "London",
    employee_id: str | None = None,
    other_mails: list[str] | None = None,
    mobile: str | None = None,
) -> dict[str, Any]:
    created_text = _iso(created)
    return {
        "id": user_id,
        "displayName": f"{given} {surname}",
        "givenName": given,
        "surname": surname,
        "userPrincipalName": upn,
        "mail": mail,
        "otherMails": other_mails or [],
        "department": department,
        "jobTitle": job_title,
        "officeLocation": office,
        "businessPhones": [],
        "mobilePhone": mobile,
        "preferredLanguage": "en-GB",
        "usageLocation": "GB",
        "employeeId": employee_id,
        "accountEnabled": enabled,
        "userType": user_type,
        "creationType": "Invitation" if user_type == "Guest" else None,
        "externalUserState": "Accepted" if user_type == "Guest" else None,
        "onPremisesSyncEnabled": None,
        "createdDateTime": created_text,
        "signInSessionsValidFromDateTime": created_text,
    }


def _make_group(
    group_id: str, name: str, description: str, created: datetime, *, role_assignable: bool = False
) -> dict[str, Any]:
    nickname = "".join(ch for ch in name.lower() if ch.isalnum())
    return {
        "id": group_id,
        "displayName": name,
        "description": description,
        "mailEnabled": False,
        "mail": None,
        "mailNickname": nickname,
        "securityEnabled": True,
        "isAssignableToRole": role_assignable,
        "groupTypes": [],
        "visibility": "Private" if role_assignable else None,
        "createdDateTime": _iso(created),
    }


def _portal_app(
    redirect_uris: tuple[str, ...], certificates: list[ClientCertificate]
) -> AppRegistration:
    return AppRegistration(
        client_id=CLIENT_ID,
        display_name="MFA Helpdesk Portal",
        service_principal_id=stable_id("servicePrincipals", CLIENT_ID),
        client_secrets=[CLIENT_SECRET],
        certificates=list(certificates),
        redirect_uris=list(DEFAULT_REDIRECT_URIS) + list(redirect_uris),
        app_roles={value: stable_id("appRoles", value) for value in APP_ROLE_VALUES},
        application_permissions=set(PORTAL_APPLICATION_PERMISSIONS),
        delegated_permissions=set(PORTAL_DELEGATED_PERMISSIONS),
        # Expose an API > Application ID URI, at its default api://{client id}: the sign-in asks
        # for api://{client id}/.default, which Entra refuses (AADSTS500011) without it
        # (https://learn.microsoft.com/entra/identity-platform/quickstart-configure-app-expose-web-apis).
        identifier_uris=[f"api://{CLIENT_ID}"],
    )


def _reader_app() -> AppRegistration:
    return AppRegistration(
        client_id=READER_CLIENT_ID,
        display_name="Directory Reader (test app)",
        service_principal_id=stable_id("servicePrincipals", READER_CLIENT_ID),
        client_secrets=[READER_CLIENT_SECRET],
        redirect_uris=list(DEFAULT_REDIRECT_URIS),
        application_permissions={"User.Read.All"},
        delegated_permissions={"User.Read"},
    )


def build_tenant(
    *,
    users: int = 200,
    seed: int = DEFAULT_SEED,
    now: datetime | None = None,
    redirect_uris: tuple[str, ...] = (),
    client_certificates: list[ClientCertificate] | None = None,
    with_security: bool = True,
) -> Tenant:
    """A fresh, deterministic tenant with ``users`` people in all (personas included, at least
    the personas and the guest). Same arguments, same tenant."""
    rng = random.Random(seed)  # noqa: S311 - deterministic demo data, never secrets
    now = (now or datetime.now(UTC)).astimezone(UTC)
    tenant = Tenant(tenant_id=TENANT_ID, domain=DOMAIN)
    tenant.apps[CLIENT_ID] = _portal_app(redirect_uris, client_certificates or [])
    tenant.apps[READER_CLIENT_ID] = _reader_app()

    departments = list(_DEPARTMENTS)
    dept_members: dict[str, list[str]] = {d: [] for d in departments}

    # Department heads first (they report to the CEO), so every manager exists before its reports.
    ceo_id = persona_oid(f"carla.ceo@{DOMAIN}")
    tenant.add_user(
        _make_user(
            user_id=ceo_id,
            given="Carla",
            surname="Chief",
            upn=f"carla.ceo@{DOMAIN}",
            mail=f"carla.ceo@{DOMAIN}",
            department="Executive",
            job_title="Chief Executive Officer",
            created=now - timedelta(days=2400),
            employee_id="E000001",
        )
    )
    executives = [ceo_id]
    used_upns = {f"carla.ceo@{DOMAIN}"}
    base_counts: dict[str, int] = {}
    generated_target = max(0, users - len(_PERSONA_TABLE) - 2)  # personas, CEO and guest

    def new_person(department: str, *, head: bool = False) -> str:
        given, surname = rng.choice(_FIRST_NAMES), rng.choice(_SURNAMES)
        base = "".join(ch for ch in f"{given}.{surname}".lower() if ch.isalnum() or ch == ".")
        base = base.encode("ascii", "ignore").decode() or "user"
        upn = f"{base}@{DOMAIN}"
        counter = base_counts.get(base, 1)
        while upn in used_upns:
            counter += 1
            upn = f"{base}{counter}@{DOMAIN}"
        base_counts[base] = counter
        used_upns.add(upn)
        user_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        title = f"Head of {department}" if head else rng.choice(_DEPARTMENTS[department])
        enabled = head or rng.random() >= 0.03
        tenant.add_user(
            _make_user(
                user_id=user_id,
                given=given,
                surname=surname,
                upn=upn,
                mail=upn,
                department=department,
                job_title=title,
                created=now - timedelta(days=rng.randint(20, 2200), seconds=rng.randint(0, 86399)),
                enabled=enabled,
                office=rng.choice(_OFFICES),
                employee_id=f"E{len(tenant.users) + 1:06d}",
                other_mails=[f"{base}.home@example.net"] if rng.random() < 0.4 else [],
                mobile=f"+44 7700 9{rng.randint(0, 99999):05d}" if rng.random() < 0.5 else None,
            )
        )
        members = dept_members[department]
        if head or not members:
            tenant.managers[user_id] = ceo_id
            if head:
                executives.append(user_id)
        else:
            # Managers are earlier members, mostly near the top: a shallow tree, never a cycle.
            tenant.managers[user_id] = members[rng.randrange(0, 1 + len(members) // 6)]
        members.append(user_id)
        return user_id

    for department in departments[: min(len(departments), generated_target)]:
        new_person(department, head=True)
    for _ in range(generated_target - sum(len(m) for m in dept_members.values())):
        new_person(rng.choice(departments))

    # Personas: helpdesk staff in IT, reporting to the IT head; targets in their departments.
    it_head = dept_members["IT"][0] if dept_members["IT"] else ceo_id
    for prefix, (given, surname, title, app_roles, _roles) in _PERSONA_TABLE.items():
        persona = PERSONAS[prefix]
        department = _PERSONA_DEPARTMENTS.get(prefix, "IT")
        tenant.add_user(
            _make_user(
                user_id=persona["id"],
                given=given,
                surname=surname,
                upn=persona["upn"],
                mail=persona["upn"],
                department=department,
                job_title=title,
                created=now - timedelta(days=400),
                employee_id=f"P{len(tenant.users):06d}",
                other_mails=[f"{prefix}.personal@example.net"],
                mobile="+44 7700 900123" if prefix == "sam.standard" else None,
            )
        )
        members = dept_members.setdefault(department, [])
        tenant.managers[persona["id"]] = members[0] if members else it_head
        members.append(persona["id"])
        if app_roles:
            tenant.app_role_assignments[persona["id"]] = set(app_roles)

    tenant.add_user(
        _make_user(
            user_id=GUEST_ID,
            given="Gina",
            surname="Guest",
            upn=GUEST_UPN,
            mail="gina.guest@fabrikam.example",
            department="Partners",
            job_title="Consultant",
            created=now - timedelta(days=90),
            user_type="Guest",
        )
    )
    tenant.users[GUEST_ID]["displayName"] = "Gina Guest (Fabrikam)"

    _seed_groups(tenant, rng, now, dept_members, executives)

    if with_security:
        try:
            security = importlib.import_module("entra_emulator.seed_security")
        except ModuleNotFoundError as exc:
            if exc.name != "entra_emulator.seed_security":
                raise
        else:
            security.seed_security(tenant, rng, now)
    return tenant


def _seed_groups(
    tenant: Tenant,
    rng: random.Random,
    now: datetime,
    dept_members: dict[str, list[str]],
    executives: list[str],
) -> None:
    created = now - timedelta(days=700)
    for department, members in dept_members.items():
        if not members:
            continue
        group_id = stable_id("groups", f"dept-{department}")
        tenant.groups[group_id] = _make_group(
            group_id, f"Dept - {department}", f"Everyone in {department}", created
        )
        tenant.group_members[group_id] = set(members)

    def add(
        name: str, description: str, members: set[str], *, role_assignable: bool = False
    ) -> None:
        group_id = GROUP_IDS[name]
        tenant.groups[group_id] = _make_group(
            group_id, name, description, created, role_assignable=role_assignable
        )
        tenant.group_members[group_id] = members

    leads = {PERSONAS["leo.lead"]["id"], PERSONAS["lena.lead"]["id"]}
    add(HELPDESK_LEADS_GROUP, "Service desk team leads", set(leads))
    staff = {p["id"] for p in PERSONAS.values() if p["app_roles"]} - leads
    # Nested: the leads group is a member of the staff group (transitiveMemberOf must see it).
    add(
        HELPDESK_STAFF_GROUP,
        "Everyone who works the service desk",
        staff | {GROUP_IDS[HELPDESK_LEADS_GROUP]},
    )
    add(PROTECTED_GROUP, "Executive team: protected from helpdesk resets", set(executives))
    security_people = [
        u
        for u in dept_members.get("Security", [])
        if u not in (PERSONAS["priya.privileged"]["id"], PERSONAS["rita.responder"]["id"])
    ]
    operators = set(rng.sample(security_people, k=min(2, len(security_people))))
    add(
        ROLE_ASSIGNABLE_GROUP,
        "Role-assignable group holding a directory role",
        operators,
        role_assignable=True,
    )
    # The incident groups need PERSONAS and GROUP_IDS from here: imported once they exist.
    from entra_emulator.seed_incident import seed_phishing_groups

    seed_phishing_groups(tenant, set(executives), add)
