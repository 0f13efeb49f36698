// UIDL: popa3d's header selection and digest (reference §4.5). The four
// vectors observed on the Debian popa3d binary are mandatory.
#include "mailbox/uidl.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "mailbox/mbox_index.h"

namespace popgate::mailbox {
namespace {

std::string Uidl(absl::string_view selected) {
  char out[kUidlLength];
  ComputeUidl(selected, out);
  return std::string(out, kUidlLength);
}

// The UIDL of the only message of a one-message mbox with these headers.
std::string MboxUidl(absl::string_view headers) {
  std::string mbox = "From someone@example.org Mon Jan  1 00:00:00 2024\n";
  mbox.append(headers.data(), headers.size());
  mbox += "\nbody line\n";
  auto index = IndexMbox(mbox, 10);
  EXPECT_TRUE(index.ok()) << index.status();
  if (!index.ok() || index->size() != 1) return "";
  return std::string((*index)[0].uidl_view());
}

struct VectorCase {
  const char* name;
  const char* headers;
  const char* uidl;
};

TEST(UidlTest, PopA3dVectors) {
  const VectorCase kCases[] = {
      {"NothingSelected", "Subject: hi\nStatus: RO\n", "d98c1dd404b2008f"},
      {"OnlyCrlfReceived", "Received: crlf\r\nSubject: x\r\n",
       "959b861170a26536"},
      {"NoReceivedDateMessageIdDeliveryId",
       "date: Tue, 2 Jan 2024 00:00:00 +0000\n"
       "MESSAGE-ID: <two@example.org>\n"
       "X-Delivery-ID: abc123\n",
       "6979698e5fe32dcd"},
      {"ReceivedBlockAndDeliveredTo",
       "Received: from mx.example.org (mx [1.2.3.4])\n"
       "\tby host.local with ESMTP id 123\n"
       "\tfor <p3test@host.local>; Mon, 1 Jan 2024 00:00:00 +0000\n"
       "Delivered-To: p3test@host.local\n",
       "3017b921a1553d1f"},
  };
  for (const VectorCase& c : kCases) {
    SCOPED_TRACE(c.name);
    EXPECT_EQ(MboxUidl(c.headers), c.uidl);
  }
  // The same vectors straight from the selected bytes.
  EXPECT_EQ(Uidl(""), "d98c1dd404b2008f");
  EXPECT_EQ(Uidl("Received: crlf\r\n"), "959b861170a26536");
  EXPECT_EQ(Uidl("date: Tue, 2 Jan 2024 00:00:00 +0000\n"
                 "MESSAGE-ID: <two@example.org>\n"
                 "X-Delivery-ID: abc123\n"),
            "6979698e5fe32dcd");
  EXPECT_EQ(Uidl("Received: from mx.example.org (mx [1.2.3.4])\n"
                 "\tby host.local with ESMTP id 123\n"
                 "\tfor <p3test@host.local>; Mon, 1 Jan 2024 00:00:00 +0000\n"
                 "Delivered-To: p3test@host.local\n"),
            "3017b921a1553d1f");
}

struct SelectCase {
  const char* name;
  std::vector<std::string> lines;
  std::vector<bool> selected;
};

TEST(UidlSelectorTest, Rules) {
  const SelectCase kCases[] = {
      {"ContinuationAfterFromNotSelected",
       {" cont\n", "\tmore\n"},
       {false, false}},
      {"OnlyFirstReceivedAndItsContinuations",
       {"Received: a\n", " a2\n", "Received: b\n", " b2\n"},
       {true, true, false, false}},
      {"ReceivedIsCaseInsensitiveColonRequired",
       {"Received a\n", "RECEIVED: x\n"},
       {false, true}},
      {"DateAndMessageIdOnlyBeforeReceived",
       {"Date: 1\n", "Message-ID: <1>\n", "Received: r\n", "Date: 2\n",
        "Message-Id: <2>\n"},
       {true, true, true, false, false}},
      {"DeliveredToAlways",
       {"Received: r\n", "Delivered-To: a\n", "delivered-to: b\n"},
       {true, true, true}},
      {"XDeliveryIdUppercaseXOnly",
       {"X-Delivery-ID: 1\n", "x-delivery-id: 2\n", "X-DELIVERY-id: 3\n"},
       {true, false, true}},
      {"ContinuationFollowsPreviousDecision",
       {"Subject: s\n", " s2\n", "Date: d\n", " d2\n"},
       {false, false, true, true}},
      {"OtherHeadersNever",
       {"Status: RO\n", "Content-Length: 3\n", "Return-Path: <a>\n",
        "Message: x\n"},
       {false, false, false, false}},
      {"CrIsPartOfTheLine", {"Date: x\r\n"}, {true}},
  };
  for (const SelectCase& c : kCases) {
    SCOPED_TRACE(c.name);
    UidlSelector selector;
    selector.Reset();
    ASSERT_EQ(c.lines.size(), c.selected.size());
    for (size_t i = 0; i < c.lines.size(); ++i) {
      EXPECT_EQ(selector.Select(c.lines[i]), c.selected[i]) << c.lines[i];
    }
  }
}

TEST(UidlTest, IndependentOfBodyFromLineAndPosition) {
  const std::string headers = "Received: x\nSubject: s\n";
  std::string a = "From a Mon\n" + headers + "\nbody1\n\n";
  std::string b = "From b Tue\n" + headers + "\nother body\n";
  auto index = IndexMbox(a + b, 10);
  ASSERT_TRUE(index.ok());
  ASSERT_EQ(index->size(), 2u);
  EXPECT_EQ((*index)[0].uidl_view(), (*index)[1].uidl_view());
  EXPECT_EQ((*index)[0].uidl_view(), Uidl("Received: x\n"));
}

TEST(UidlTest, HeaderSectionEndsAtLfOnlyLine) {
  // A "\r\n" line does not end the header section: the Received: after it
  // is still a header line for the UIDL.
  auto index = IndexMbox(
      "From a\nSubject: s\r\n\r\nReceived: late\n\n"
      "Received: body\n",
      10);
  ASSERT_TRUE(index.ok());
  ASSERT_EQ(index->size(), 1u);
  EXPECT_EQ((*index)[0].uidl_view(), Uidl("Received: late\n"));
}

}  // namespace
}  // namespace popgate::mailbox
