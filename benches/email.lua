-- wrk script: POST /inbound/email with a ~20 KB UTF-8 email, a new Message-ID and sender each
-- request (so every request is parsed, classified, stored, a case opened, an ack queued).
local counter = 0
local threads = {}
local body_text

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

function init(args)
  counter = 0
  local para = "您好，我家的宽带从前天晚上开始就一直断断续续，晚上八点以后基本无法上网，光猫的LOS灯一直闪红。" ..
               "已经打过两次报修电话，师傅说今天会来但是没有人联系我。请尽快安排维修，谢谢。\n"
  body_text = string.rep(para, 110)   -- ~20 KB of UTF-8
end

request = function()
  counter = counter + 1
  local msg = "From: Customer " .. tid .. "-" .. counter .. " <c" .. tid .. "x" .. counter .. "@example.cn>\r\n" ..
    "To: customer-service@gw.test\r\n" ..
    "Subject: 宽带故障报修 " .. counter .. "\r\n" ..
    "Message-ID: <bench-" .. tid .. "-" .. counter .. "-" .. os.time() .. "@example.cn>\r\n" ..
    "Date: Wed, 25 Nov 2026 10:00:00 +0800\r\n" ..
    "MIME-Version: 1.0\r\n" ..
    "Content-Type: text/plain; charset=utf-8\r\n" ..
    "Content-Transfer-Encoding: 8bit\r\n\r\n" .. body_text
  return wrk.format("POST", "/inbound/email", {["Content-Type"] = "message/rfc822"}, msg)
end
