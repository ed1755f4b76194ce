"""The users (the special ones of ``KNOWN_CASES`` first), their
memberships of publishers, and their history."""
from __future__ import annotations

from .known import KNOWN
from .records import Publisher, User
from .words import slug


class People:
    """Part of ``Generator``: the users, their memberships of publishers and
    what hangs off users (ratings, follows, old authorization rows)."""

    def add_user(self, name: str, fullname, email=None, sysadmin=False,
                 state="active", publishing=False, openid=None) -> User:
        created = self.when()
        user = User(self.uuid(), name, created, publishing)
        if email is None and fullname:
            email = f"{slug(fullname) or name}.{len(self.users)}@example.gov.uk"
        self.load.add("user", user.id, name, self.uuid(), created,
                      None if self.rng.random() < 0.8 else "Works on open data.",
                      openid, "$pbkdf2-sha512$" + self.uuid().replace("-", ""),
                      fullname, email, None, sysadmin, False, state)
        self.users.append(user)
        self.by_name[name] = user
        return user

    def build_users(self) -> None:
        known = KNOWN
        for pseudo in known.pseudo_users:
            self.add_user(pseudo, None, email=None)
        self.add_user(known.site_user, None, sysadmin=True)
        self.add_user("dgu_support", "DGU Support", "support@data.gov.uk",
                      sysadmin=True, publishing=True)
        self.add_user("harvest", "Harvest", "harvest@data.gov.uk", sysadmin=True)
        self.add_user("user_d101", "Ross Jones", "ross.jones@example.gov.uk",
                      sysadmin=True)
        for name in known.same_fullname_users:
            self.add_user(name, known.same_fullname, publishing=True)
        for name, fullname in known.invalid_fullnames.items():
            self.add_user(name, fullname,
                          email=f"{name}@example.gov.uk", publishing=True)
        self.add_user(known.non_publishing_user_d, "Peter Parker")
        for name in (known.publishing_admin, known.publishing_editor,
                     known.deleted_membership_only,
                     known.active_and_deleted_memberships):
            self.add_user(name, self.person(), publishing=True)
        for name in known.non_publishing_with_history:
            self.add_user(name, self.person())
        deleted, kept = known.email_case_clash_deleted_vs_kept
        self.add_user(deleted, "Jane Doe", "Jane.Doe@example.gov.uk")
        self.add_user(kept, "Jane Doe", "jane.doe@example.gov.uk",
                      publishing=True)
        first, second = known.email_case_clash_kept_pair
        self.add_user(first, "Bob Jones", "Bob.Jones@anytown.gov.uk",
                      publishing=True)
        self.add_user(second, "Robert Jones", "bob.jones@ANYTOWN.gov.uk",
                      publishing=True)
        self.special_users = len(self.users)

        wanted = max(self.datasets // 5, self.special_users + 10)
        uid = 5000
        while len(self.users) < wanted:
            uid += self.rng.randint(1, 40)
            fullname = self.person()
            roll = self.rng.random()
            if roll < 0.75:
                name, openid = f"user_d{uid}", None
            elif roll < 0.9:
                name, openid = f"{slug(fullname)}-{uid}", None
            else:
                name = f"openid-{uid}"
                openid = f"https://openid.example.org/{uid}"
            state = "deleted" if self.rng.random() < 0.03 else "active"
            self.add_user(name, fullname, openid=openid, state=state,
                          publishing=self.rng.random() < 0.3)
        self.load.maybe_flush()

    def member(self, group_id, table_id, table_name, capacity, history):
        self.versioned("member", {
            "id": self.uuid(), "group_id": group_id, "table_id": table_id,
            "table_name": table_name, "capacity": capacity}, history)

    def membership(self, user: User, publisher: Publisher, capacity: str,
                   state: str = "active") -> None:
        moment = max(user.created, publisher.created)
        history = self.history(self.later(moment, 30), "dgu_support",
                               f"membership of {user.name}",
                               final_state=state,
                               updates=1 if state != "active" else 0)
        self.member(publisher.id, user.id, "user", capacity, history)

    def build_memberships(self) -> None:
        known = KNOWN
        first = self.publishers[0]
        self.membership(self.by_name["dgu_support"], first, "admin")
        for name in known.same_fullname_users + tuple(known.invalid_fullnames):
            self.membership(self.by_name[name], first, "editor")
        self.membership(self.by_name[known.publishing_admin],
                        self.publishers[1], "admin")
        self.membership(self.by_name[known.publishing_editor],
                        self.publishers[1], "editor")
        self.membership(self.by_name[known.deleted_membership_only],
                        self.publishers[2], "editor", state="deleted")
        both = self.by_name[known.active_and_deleted_memberships]
        self.membership(both, self.publishers[2], "admin", state="deleted")
        self.membership(both, self.publishers[3], "admin")
        for name in (known.email_case_clash_deleted_vs_kept[1],
                     *known.email_case_clash_kept_pair):
            self.membership(self.by_name[name], self.publishers[4], "editor")
        for user in self.users[self.special_users:]:
            if not user.publishing:
                continue
            for _ in range(1 if self.rng.random() < 0.8 else 2):
                self.membership(
                    user, self.rng.choice(self.publishers),
                    "admin" if self.rng.random() < 0.3 else "editor",
                    state="deleted" if self.rng.random() < 0.08 else "active")
        self.load.maybe_flush()

    def build_user_history(self) -> None:
        rng = self.rng
        known = KNOWN
        packages = [p for p in self.packages]
        visitor, logged_in = (self.by_name["visitor"],
                              self.by_name["logged_in"])
        # CKAN 1.x's default system roles, never removed by 2.x.
        for user, role in ((visitor, "reader"), (logged_in, "editor")):
            uor = self.uuid()
            self.load.add("user_object_role", uor, user.id, "System", role,
                          None)
            self.load.add("system_role", uor)
        auth_group = self.uuid()
        self.load.add("authorization_group", auth_group, "dgu-editors-legacy",
                      self.start)
        historic = [self.by_name[n] for n in known.non_publishing_with_history]
        others = [u for u in self.users[self.special_users:]
                  if not u.publishing]
        sample = historic + rng.sample(others, len(others) // 3)
        for user in sample:
            package_id, _name, moment = rng.choice(packages)
            self.load.add("rating", self.uuid(), user.id, None,
                          float(rng.randint(1, 5)), self.later(moment),
                          package_id)
            uor = self.uuid()
            self.load.add("user_object_role", uor, user.id, "Package",
                          "admin", None)
            self.load.add("package_role", uor, package_id)
            uor = self.uuid()
            self.load.add("user_object_role", uor, user.id, "Group",
                          "editor", None)
            self.load.add("group_role", uor, rng.choice(self.publishers).id)
            self.load.add("dashboard", user.id, self.later(moment),
                          self.later(moment))
            followed = rng.choice(self.users[3:])
            if followed is not user:
                self.load.add("user_following_user", user.id, followed.id,
                              self.later(moment))
            self.load.add("user_following_dataset", user.id, package_id,
                          self.later(moment))
            self.load.add("user_following_group", user.id,
                          rng.choice(self.publishers).id, self.later(moment))
            self.load.add("publisher_request", self.uuid(), user.name,
                          rng.choice(self.publishers).name,
                          "I work there and would like to publish data.",
                          self.later(moment), None, None, self.uuid())
        # Someone publishing follows a user who will be deleted.
        self.load.add("user_following_user",
                      self.by_name[known.publishing_admin].id, historic[0].id,
                      self.later(self.start))
        first = historic[0]
        self.load.add("authorization_group_user", auth_group, first.id,
                      self.uuid())
        uor = self.uuid()
        self.load.add("user_object_role", uor, None, "AuthorizationGroup",
                      "editor", auth_group)
        self.load.add("authorization_group_role", uor, auth_group)
        # Anonymous ratings.
        for package_id, _name, moment in rng.sample(
                packages, max(1, len(packages) // 50)):
            self.load.add("rating", self.uuid(), None,
                          f"10.0.{rng.randrange(256)}.{rng.randrange(256)}",
                          float(rng.randint(1, 5)), self.later(moment),
                          package_id)
        # Publishing users have dashboards too.
        for user in self.users:
            if user.publishing and rng.random() < 0.5:
                self.load.add("dashboard", user.id, self.later(user.created),
                              self.later(user.created))
        self.load.maybe_flush()
