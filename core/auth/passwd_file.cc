#include "core/auth/passwd_file.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <mutex>
#include <optional>
#include <utility>

#include "absl/cleanup/cleanup.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "core/auth/crypt_verify.h"
#include "core/logging.h"
#include "core/status_macros.h"

namespace popgate::core::auth {
namespace {

// Dovecot scheme name -> required crypt id prefix ("" = any crypt hash).
// Scheme names compare case-insensitively, as in Dovecot.
struct Scheme {
  absl::string_view name;
  absl::string_view required_prefix[3];
};

constexpr Scheme kSchemes[] = {
    {"CRYPT", {"", "", ""}},
    {"SHA512-CRYPT", {"$6$", "", ""}},
    {"SHA256-CRYPT", {"$5$", "", ""}},
    {"BLF-CRYPT", {"$2b$", "$2y$", "$2a$"}},
};

// Splits "{SCHEME}hash". Returns false (and sets *why) if the password field
// is unusable; *hash is then empty.
bool ParsePasswordField(absl::string_view field, std::string* hash,
                        std::string* why) {
  absl::string_view scheme_name = "CRYPT";
  absl::string_view rest = field;
  if (absl::StartsWith(field, "{")) {
    const size_t close = field.find('}');
    if (close == absl::string_view::npos) {
      *why = "unterminated {SCHEME}";
      return false;
    }
    scheme_name = field.substr(1, close - 1);
    rest = field.substr(close + 1);
  }
  const Scheme* scheme = nullptr;
  for (const Scheme& s : kSchemes) {
    if (absl::EqualsIgnoreCase(s.name, scheme_name)) scheme = &s;
  }
  if (scheme == nullptr) {
    // Only printable scheme names are echoed into the log.
    *why = absl::StrCat("unsupported scheme {",
                        scheme_name.size() <= 32 ? scheme_name : "...", "}");
    return false;
  }
  if (rest.empty() || rest[0] == '*' || rest[0] == '!') {
    *why = "locked or empty password";
    return false;
  }
  if (!scheme->required_prefix[0].empty()) {
    bool prefix_ok = false;
    for (absl::string_view p : scheme->required_prefix) {
      if (!p.empty() && absl::StartsWith(rest, p)) prefix_ok = true;
    }
    if (!prefix_ok) {
      *why = absl::StrCat("hash does not match scheme {", scheme->name, "}");
      return false;
    }
  }
  if (!IsCompleteCryptHash(rest)) {
    *why = "not a hash libcrypt supports";
    return false;
  }
  *hash = std::string(rest);
  return true;
}

bool ParseId(absl::string_view text, uint32_t* id) {
  // Digits only: SimpleAtoi would accept "+5" and surrounding spaces.
  if (text.empty() || text.size() > 10) return false;
  for (char c : text) {
    if (!absl::ascii_isdigit(static_cast<unsigned char>(c))) return false;
  }
  // (uid_t)-1 means "no change" to setuid(2): never a real account.
  return absl::SimpleAtoi(text, id) && *id != 0xffffffffu;
}

bool IsPrintableName(absl::string_view name) {
  if (name.empty() || name.size() > 255) return false;
  for (char c : name) {
    const unsigned char u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) return false;
  }
  return true;
}

}  // namespace

PasswdFileTable ParsePasswdFile(absl::string_view contents) {
  PasswdFileTable table;
  absl::flat_hash_map<std::string, int> cost_counts;
  std::vector<std::pair<std::string, std::string>> cost_order;  // key, hash
  size_t line_number = 0;
  for (absl::string_view line : absl::StrSplit(contents, '\n')) {
    ++line_number;
    if (absl::EndsWith(line, "\r")) line.remove_suffix(1);
    if (line.size() > kPasswdFileMaxLineBytes) {
      table.warnings.push_back(
          absl::StrCat("line ", line_number, ": longer than ",
                       kPasswdFileMaxLineBytes, " bytes, skipped"));
      continue;
    }
    absl::string_view trimmed = absl::StripAsciiWhitespace(line);
    if (trimmed.empty() || trimmed[0] == '#') continue;

    std::vector<absl::string_view> fields = absl::StrSplit(line, ':');
    if (fields.size() < 4) {
      table.warnings.push_back(absl::StrCat(
          "line ", line_number, ": want user:password:uid:gid, skipped"));
      continue;
    }
    const absl::string_view name = fields[0];
    if (!IsPrintableName(name)) {
      table.warnings.push_back(
          absl::StrCat("line ", line_number, ": bad user name, skipped"));
      continue;
    }
    uint32_t uid = 0;
    uint32_t gid = 0;
    if (!ParseId(fields[2], &uid) || !ParseId(fields[3], &gid)) {
      table.warnings.push_back(absl::StrCat(
          "line ", line_number, ": uid/gid not a number, skipped"));
      continue;
    }
    if (table.entries.contains(name)) {
      table.warnings.push_back(absl::StrCat(
          "line ", line_number, ": duplicate user ", name, ", ignored"));
      continue;
    }
    PasswdFileEntry entry;
    entry.name = std::string(name);
    entry.uid = uid;
    entry.gid = gid;
    if (fields.size() > 5) entry.home = std::string(fields[5]);
    std::string why;
    if (!ParsePasswordField(fields[1], &entry.hash, &why)) {
      // Kept (locked) rather than dropped, so the log names the account
      // instead of calling it UNKNOWN USER.
      table.warnings.push_back(absl::StrCat("line ", line_number, ": user ",
                                            name, ": ", why, ", locked"));
    } else if (uid == 0) {
      table.warnings.push_back(absl::StrCat("line ", line_number, ": user ",
                                            name, ": uid 0 is never served"));
    } else {
      if (IsWeakCryptHash(entry.hash)) {
        table.warnings.push_back(absl::StrCat(
            "line ", line_number, ": user ", name, ": weak hash, rehash it"));
      }
      const std::string key = CryptCostKey(entry.hash);
      if (cost_counts[key]++ == 0) cost_order.emplace_back(key, entry.hash);
    }
    table.entries.emplace(entry.name, std::move(entry));
  }
  int best = 0;
  for (const auto& [key, hash] : cost_order) {  // first seen wins ties
    if (cost_counts[key] > best) {
      best = cost_counts[key];
      table.representative_hash = hash;
    }
  }
  return table;
}

namespace {

const char* ErrnoText(int err) {
  const char* text = ::strerrordesc_np(err);
  return text != nullptr ? text : "unknown error";
}

struct LoadedFile {
  std::string contents;
  FileIdentity identity;
};

absl::StatusOr<LoadedFile> ReadWholeFile(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) {
    return absl::UnavailableError(
        absl::StrCat("open ", path, ": ", ErrnoText(errno)));
  }
  absl::Cleanup close_fd = [fd] { ::close(fd); };
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    return absl::UnavailableError(
        absl::StrCat("fstat ", path, ": ", ErrnoText(errno)));
  }
  if (!S_ISREG(st.st_mode)) {
    return absl::UnavailableError(absl::StrCat(path, ": not a regular file"));
  }
  if (st.st_size < 0 ||
      static_cast<uint64_t>(st.st_size) > kPasswdFileMaxBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": larger than ", kPasswdFileMaxBytes, " bytes"));
  }
  if ((st.st_mode & S_IROTH) != 0) {
    Logf(Severity::kWarning, "%s is world-readable; chmod o-r it", path);
  }
  LoadedFile loaded;
  loaded.identity = FileIdentity{st.st_dev, st.st_ino, st.st_size,
                                 absl::TimeFromTimespec(st.st_mtim)};
  // Read to EOF, not st_size bytes: the file may be rewritten under us; the
  // cap still applies.
  char buffer[65536];
  for (;;) {
    const ssize_t n = ::read(fd, buffer, sizeof(buffer));
    if (n < 0) {
      if (errno == EINTR) continue;
      return absl::UnavailableError(
          absl::StrCat("read ", path, ": ", ErrnoText(errno)));
    }
    if (n == 0) break;
    loaded.contents.append(buffer, static_cast<size_t>(n));
    if (loaded.contents.size() > kPasswdFileMaxBytes) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": larger than ", kPasswdFileMaxBytes, " bytes"));
    }
  }
  return loaded;
}

}  // namespace

PasswdFileAuthenticator::PasswdFileAuthenticator(std::string path)
    : path_(std::move(path)) {}

absl::StatusOr<std::unique_ptr<PasswdFileAuthenticator>>
PasswdFileAuthenticator::Open(std::string path) {
  std::unique_ptr<PasswdFileAuthenticator> authenticator(
      new PasswdFileAuthenticator(std::move(path)));
  RETURN_IF_ERROR(authenticator->Reload());
  return authenticator;
}

absl::Status PasswdFileAuthenticator::Reload() {
  ASSIGN_OR_RETURN(LoadedFile loaded, ReadWholeFile(path_));
  auto table =
      std::make_shared<PasswdFileTable>(ParsePasswdFile(loaded.contents));
  ::explicit_bzero(loaded.contents.data(), loaded.contents.size());
  for (const std::string& warning : table->warnings) {
    Logf(Severity::kWarning, "%s: %s", path_, warning);
  }
  if (table->representative_hash.empty()) {
    // Legal (everyone is refused), but almost certainly not what the admin
    // meant; say so once per load rather than once per failed login.
    Logf(Severity::kWarning, "%s: no account can log in", path_);
  }
  // Generated per load: the dummy follows the file's most common cost, so
  // unknown users cost what most real users cost, even after a rehash.
  std::string dummy = MakeDummySetting(table->representative_hash);
  std::unique_lock lock(mu_);
  table_ = std::move(table);
  dummy_setting_ = std::move(dummy);
  identity_ = loaded.identity;
  return absl::OkStatus();
}

void PasswdFileAuthenticator::WipeSecrets() {
  std::unique_lock lock(mu_);
  if (table_ != nullptr && table_.use_count() == 1) {
    // Sole owner (no Authenticate() holds a copy): the table is ours to
    // scrub before it is freed. It is const only to readers.
    auto& table = const_cast<PasswdFileTable&>(*table_);
    for (auto& [name, entry] : table.entries) {
      ::explicit_bzero(entry.hash.data(), entry.hash.size());
    }
    ::explicit_bzero(table.representative_hash.data(),
                     table.representative_hash.size());
  }
  table_ = std::make_shared<const PasswdFileTable>();
}

absl::StatusOr<AuthenticatedUser> PasswdFileAuthenticator::Authenticate(
    absl::string_view user, absl::string_view password, bool* known_user) {
  // Copy what we need under the lock and hash outside it: crypt takes
  // milliseconds and Reload() must not wait for a queue of them.
  std::optional<PasswdFileEntry> entry;
  std::string dummy;
  {
    std::shared_lock lock(mu_);
    auto it = table_->entries.find(user);
    if (it != table_->entries.end()) entry = it->second;
    dummy = dummy_setting_;
  }
  if (known_user != nullptr) *known_user = entry.has_value();

  // Exactly one crypt_r on every path: unknown user, locked hash, uid 0 and
  // an empty password all hash against the dummy setting (same scheme and
  // cost as most users), so timing does not tell them apart.
  const bool usable = entry.has_value() && !entry->hash.empty();
  const bool match = CryptVerify(password, usable ? entry->hash : dummy);
  if (!usable || !match || password.empty() || entry->uid == 0) {
    return AuthFailedError();
  }
  return AuthenticatedUser{entry->name, entry->uid, entry->gid, entry->home};
}

FileIdentity PasswdFileAuthenticator::identity() const {
  std::shared_lock lock(mu_);
  return identity_;
}

size_t PasswdFileAuthenticator::size() const {
  std::shared_lock lock(mu_);
  return table_->entries.size();
}

}  // namespace popgate::core::auth
