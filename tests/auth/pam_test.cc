// PAM tests need a service file under /etc/pam.d, so they run only as root
// with a writable /etc/pam.d (containers, CI) and skip otherwise. Each test
// installs /etc/pam.d/popgate-test-<pid>-<n> and removes it afterwards;
// nothing else on the system is touched (the accounts used, root and
// nobody, already exist).
#include "core/auth/pam.h"

#include <pwd.h>
#include <security/pam_appl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/logging.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace popgate::core::auth {
namespace {

using ::popgate::testing::IsOk;

constexpr char kPassword[] = "s3cret pass";

// The conversation needs no PAM service: run it directly.
TEST(PamConversationTest, AnswersUserAndPasswordPrompts) {
  std::vector<std::string> answers;
  ASSERT_EQ(ConversePamForTest({PAM_PROMPT_ECHO_ON, PAM_TEXT_INFO,
                                PAM_PROMPT_ECHO_OFF, PAM_ERROR_MSG},
                               "alice", "pass word", &answers),
            PAM_SUCCESS);
  EXPECT_EQ(answers,
            (std::vector<std::string>{"alice", "", "pass word", ""}));
}

TEST(PamConversationTest, BinaryPromptsAndBadCountsFail) {
  std::vector<std::string> answers;
  // A failure after some answers were strdup'ed frees them (ASan checks)
  // and hands back nothing.
  EXPECT_EQ(ConversePamForTest({PAM_PROMPT_ECHO_OFF, PAM_PROMPT_ECHO_ON, 99},
                               "alice", "pw", &answers),
            PAM_CONV_ERR);
  EXPECT_EQ(ConversePamForTest({}, "alice", "pw", &answers), PAM_CONV_ERR);
  EXPECT_EQ(ConversePamForTest(std::vector<int>(PAM_MAX_NUM_MSG + 1,
                                                PAM_TEXT_INFO),
                               "alice", "pw", &answers),
            PAM_CONV_ERR);
}

class PamTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0 || ::access("/etc/pam.d", W_OK) != 0) {
      GTEST_SKIP() << "needs root and a writable /etc/pam.d";
    }
    struct passwd* pw = ::getpwnam("nobody");
    if (pw == nullptr || pw->pw_uid == 0) {
      GTEST_SKIP() << "needs the 'nobody' account";
    }
    nobody_uid_ = pw->pw_uid;
    char dir[] = "/tmp/popgate_pam_test_XXXXXX";
    ASSERT_NE(::mkdtemp(dir), nullptr);
    dir_ = dir;
    ::chmod(dir_.c_str(), 0755);
    seen_ = dir_ + "/seen";
    // pam_exec hands the password on stdin (expose_authtok) and the PAM
    // items in the environment; the script records what it saw.
    script_ = dir_ + "/check.sh";
    {
      std::ofstream out(script_);
      out << "#!/bin/sh\n"
          << "pw=$(tr -d '\\000')\n"
          << "printf '%s|%s|%s\\n' \"$PAM_USER\" \"$PAM_RHOST\" \"$PAM_TYPE\""
          << " >> " << seen_ << "\n"
          << "[ \"$pw\" = '" << kPassword << "' ]\n";
    }
    ASSERT_EQ(::chmod(script_.c_str(), 0755), 0);
  }

  void TearDown() override {
    for (const std::string& file : service_files_) ::unlink(file.c_str());
    if (!dir_.empty()) {
      ::unlink(seen_.c_str());
      ::unlink(script_.c_str());
      ::rmdir(dir_.c_str());
    }
  }

  // Installs a service with these auth/account lines; returns its name.
  std::string InstallService(const std::string& auth_line,
                             const std::string& account_line) {
    const std::string name =
        absl::StrCat("popgate-test-", ::getpid(), "-", service_files_.size());
    const std::string path = "/etc/pam.d/" + name;
    std::ofstream out(path);
    out << "auth " << auth_line << "\n"
        << "account " << account_line << "\n";
    service_files_.push_back(path);
    return name;
  }

  std::string Seen() {
    std::ifstream in(seen_);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }

  std::string ExecLine() {
    return "required pam_exec.so expose_authtok quiet " + script_;
  }

  uid_t nobody_uid_ = 0;
  std::string dir_;
  std::string seen_;
  std::string script_;
  std::vector<std::string> service_files_;
};

TEST_F(PamTest, ConversationPassesThePasswordAndRemoteHost) {
  PamAuthenticator auth(InstallService(ExecLine(), "required pam_permit.so"),
                        SystemAccounts());
  bool known = false;
  absl::StatusOr<AuthenticatedUser> user =
      auth.AuthenticateFrom("192.0.2.7", "nobody", kPassword, &known);
  ASSERT_THAT(user, IsOk()) << user.status();
  EXPECT_TRUE(known);
  EXPECT_EQ(user->name, "nobody");
  EXPECT_EQ(user->uid, nobody_uid_);
  EXPECT_EQ(Seen(), "nobody|192.0.2.7|auth\n");

  EXPECT_EQ(auth.Authenticate("nobody", "s3cret", &known).status(),
            AuthFailedError());
  EXPECT_TRUE(known);
  // Authenticate() sets no PAM_RHOST.
  EXPECT_EQ(Seen(), "nobody|192.0.2.7|auth\nnobody||auth\n");
}

TEST_F(PamTest, EmptyPasswordNeverReachesPam) {
  PamAuthenticator auth(InstallService(ExecLine(), "required pam_permit.so"),
                        SystemAccounts());
  bool known = false;
  EXPECT_EQ(auth.Authenticate("nobody", "", &known).status(),
            AuthFailedError());
  EXPECT_TRUE(known);
  EXPECT_EQ(auth.Authenticate("nobody", absl::string_view("x\0y", 3), nullptr)
                .status(),
            AuthFailedError());
  EXPECT_EQ(Seen(), "");
}

TEST_F(PamTest, DenyingAuthOrAccountIsTheSameRefusal) {
  PamAuthenticator deny_auth(
      InstallService("required pam_deny.so", "required pam_permit.so"),
      SystemAccounts());
  PamAuthenticator deny_account(
      InstallService("required pam_permit.so", "required pam_deny.so"),
      SystemAccounts());
  bool known = false;
  EXPECT_EQ(deny_auth.Authenticate("nobody", kPassword, &known).status(),
            AuthFailedError());
  EXPECT_TRUE(known);
  EXPECT_EQ(deny_account.Authenticate("nobody", kPassword, &known).status(),
            AuthFailedError());
  EXPECT_TRUE(known);
  known = true;
  EXPECT_EQ(deny_auth.Authenticate("popgate-no-such-user-7f3a", kPassword,
                                   &known)
                .status(),
            AuthFailedError());
  EXPECT_FALSE(known);
}

TEST_F(PamTest, RootAndAccountlessUsersAreRefusedEvenIfPamSaysYes) {
  PamAuthenticator permit(
      InstallService("required pam_permit.so", "required pam_permit.so"),
      SystemAccounts());
  bool known = false;
  EXPECT_EQ(permit.Authenticate("root", kPassword, &known).status(),
            AuthFailedError());
  EXPECT_TRUE(known);

  CaptureLogSink capture;
  ScopedLogSink scoped(&capture);
  known = true;
  EXPECT_EQ(permit.Authenticate("popgate-no-such-user-7f3a", kPassword, &known)
                .status(),
            AuthFailedError());
  EXPECT_FALSE(known);
  EXPECT_TRUE(capture.Contains("has no passwd entry"));

  EXPECT_THAT(permit.Authenticate("nobody", kPassword, nullptr), IsOk());
}

}  // namespace
}  // namespace popgate::core::auth
