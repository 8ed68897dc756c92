// Chinese messages for the error codes of the API's one error shape
// (api/errors.py): {status, code, message, errors, request_id}. A code missing
// here is shown with the API's own message, which is Chinese as well.

export const ERROR_MESSAGES = {
  // HTTP-level errors
  bad_request: "请求格式有误，请刷新页面后重试。",
  unauthorized: "请先登录。",
  forbidden: "您没有进行此操作的权限。",
  not_found: "要查看的内容不存在或已删除。",
  method_not_allowed: "页面调用了不支持的操作，请刷新页面后重试。",
  conflict: "当前状态下不能进行此操作，请刷新后查看最新状态。",
  payload_too_large: "提交的内容过大。",
  unsupported_media_type: "请求格式有误，请刷新页面后重试。",
  validation_failed: "填写的内容有误，请按提示修改。",
  too_many_requests: "操作过于频繁，请稍后再试。",
  database_unavailable: "系统繁忙，请稍后重试。",
  internal_error: "系统出错了，请稍后再试；如仍有问题请联系客服。",

  // Logging in and tokens
  token_missing: "请先登录。",
  token_expired: "登录已过期，请重新登录。",
  token_invalid: "登录状态无效，请重新登录。",
  token_revoked: "登录已失效，请重新登录。",
  token_reused: "登录已失效，请重新登录。",
  login_code_rejected: "登录码无效、已使用或已过期，请重新登录。",
  login_failed: "用户名或密码不正确。",
  account_locked: "密码错误次数过多，账号已暂时锁定，请稍后再试或联系管理员。",
  identity_provider_unavailable: "实名认证服务暂时不可用，请稍后再试。",
  identity_invalid: "实名认证返回的证件信息无效，请联系客服。",
  password_change_required: "首次登录或密码被重置后，请先修改密码。",
  password_wrong: "原密码不正确。",
  password_weak: "新密码不符合要求，请按提示修改。",
  password_unchanged: "新密码不能与原密码相同。",
  role_forbidden: "您的岗位不能使用此功能。",

  // Cases and transfers
  case_not_found: "未找到该联办事项，或您无权查看。",
  business_not_found: "未找到该登记业务号，请核对受理单上的业务号。",
  business_no_invalid: "登记业务号应为 4 到 64 位字母、数字或连字符。",
  business_withdrawn: "该登记业务已撤回。",
  business_closed: "该登记业务已登簿或已撤回。",
  transfer_not_found: "该联办事项下没有此户号。",
  case_not_open: "该事项已提交或已关闭，不能再修改。",
  case_closed: "该联办事项已关闭。",
  account_already_added: "该户号已在本联办事项中。",
  account_closed: "该户号已销户，无需过户。",
  account_not_found: "服务机构没有这个户号，请核对缴费单上的户号。",
  holder_unknown: "暂时无法获取该户号的用户信息，请稍后刷新后再确认。",
  already_confirmed: "该户号已确认过，无需重复确认。",
  already_accepted: "已同意过该过户协议，无需重复操作。",
  confirm_first: "请先确认户号信息，再同意过户协议。",
  agreement_not_found: "该服务机构尚未发布过户协议。",
  agreement_outdated: "过户协议已更新，请阅读最新版本后再同意。",
  no_accounts: "该事项没有任何户号，请先添加户号。",
  steps_missing: "还有户号未确认信息或未同意过户协议，请完成后再提交。",
  delegation_scope: "业主的授权不含此项操作，请业主本人办理或补充授权。",
  delegation_not_found: "该授权不存在或已撤销。",
  delegation_expired: "授权截止时间必须晚于当前时间。",
  delegation_too_long: "授权期限过长，请缩短截止时间。",
  delegation_expiry_invalid: "授权截止时间无效，请选择更近的日期。",
  transfer_blocked: "有户号被服务机构暂停过户或已销户，请按过户前核验的提示处理后再提交。",
  registration_completed: "不动产登记已登簿，过户已推送至服务机构，不能撤回；如需变更请联系各服务机构。",
  case_withdrawn: "该联办事项已撤回。",

  // Meter readings and the homes a citizen sold
  reading_not_found: "服务机构尚未提供过户日读数，暂不能提出异议。",
  reading_disputed: "该读数已有人提出过异议，每个读数只能提出一次，请等待服务机构核对。",
  dispute_note_invalid: "请填写读数有何异议（1 至 500 字）。",
  photo_invalid: "请上传 JPEG 或 PNG 格式的表具照片。",
  previous_owner_case_not_found: "未找到该房屋的联办事项，或您不是该房屋的原权利人。",
  release_notice_not_found: "过户完成证明不存在，或您不是该房屋的原权利人。",

  // Arrears and payment
  nothing_to_pay: "该户号没有欠费，无需缴费。",
  utility_not_connected: "该服务机构未接入线上系统，请到其营业厅办理。",
  account_holder_mismatch: "该户号登记的用户不是本房屋的权利人或原权利人，无法在线核验。",
  account_address_mismatch: "该户号的用户地址与本房屋不一致，无法在线核验。",
  utility_unavailable: "服务机构系统暂时无法查询，请稍后再试。",
  payment_settling: "已缴费，正在通知服务机构销账，请勿重复缴费。",
  payment_in_flight: "缴费二维码正在生成，请稍后刷新。",
  payment_not_found: "缴费记录不存在。",
  payment_not_payable: "该笔缴费已结束，没有可扫描的二维码。",
  payment_provider_error: "支付下单失败，请稍后再试。",
  qr_content_too_long: "二维码生成失败，请稍后再试。",

  // Customer service and staff desks
  reconciliation_item_not_found: "没有该核对项，或它不属于贵单位。",
  reconciliation_decided: "该核对项已有结论，不能改为其他结论。",
  reconciliation_unit_missing: "该核对项没有对应的房屋，无法关联。",
  decision_note_missing: "不予关联时必须填写说明，申请人会看到这段说明。",
  unit_code_missing: "请选择要关联的不动产单元。",
  unit_not_found: "该不动产单元代码不在登记数据中，请核对。",
  account_linked_elsewhere: "该户号已关联到其他房屋，请先核对那处关联。",
  transfer_not_returned: "只有退件的过户才能重新受理。",
  transfer_final: "该过户已办结或退件，不能再变更。",
  transfer_not_pushed: "该过户尚未推送给贵单位。",
  return_reason_missing: "退件必须填写退件原因。",
  feedback_out_of_order: "办理状态不能倒退。",
  idempotency_in_flight: "上一次提交仍在处理中，请稍后再试。",

  // Notices
  opt_out_token_not_found: "退订链接无效，请核对短信中的链接是否完整。",

  // Supervision report
  month_invalid: "月份格式有误，请按“年-月”选择，如 2026-03。",
  month_range_invalid: "起始月份不能晚于结束月份，且一次最多查询 36 个月。",
  utility_not_found: "没有该服务机构，请刷新页面后重新选择。",
};

// Field names that appear in `errors`, for messages such as "查询事由：…".
export const FIELD_LABELS = {
  reason: "查询事由",
  business_no: "登记业务号",
  unit_code: "不动产单元代码",
  account_no: "户号",
  id_number: "证件号码",
  username: "用户名",
  password: "密码",
  old_password: "原密码",
  new_password: "新密码",
  note: "说明",
  decision: "结论",
  version: "协议版本",
  from_month: "起始月份",
  to_month: "结束月份",
  utility: "服务机构",
  photo: "照片",
};

// Codes whose message from the API names the value at fault (a version, an
// organisation, minutes to wait), so the API's message is shown instead.
const SPECIFIC_API_MESSAGES = new Set([
  "account_locked",
  "account_not_found",
  "agreement_outdated",
  "case_not_open",
  "delegation_scope",
  "holder_unknown",
  "month_invalid",
  "password_weak",
  "reconciliation_decided",
  "transfer_final",
  "transfer_not_returned",
  "unit_not_found",
  "utility_unavailable",
]);

// Return the message to show for an error body, in Chinese.
export function messageFor(body) {
  if (!body || typeof body !== "object") {
    return "网络异常，请检查网络后重试。";
  }
  if (SPECIFIC_API_MESSAGES.has(body.code) && body.message) return body.message;
  return ERROR_MESSAGES[body.code] || body.message || "操作失败，请稍后再试。";
}

// List the field problems of a validation error as "field: problem" lines.
export function fieldProblems(body) {
  const problems = [];
  const visit = (node, name) => {
    if (Array.isArray(node)) {
      node.forEach((item) => visit(item, name));
    } else if (node && typeof node === "object") {
      Object.entries(node).forEach(([key, value]) => visit(value, key));
    } else if (node !== undefined && node !== null) {
      problems.push({ field: name, label: FIELD_LABELS[name] || name, text: String(node) });
    }
  };
  visit(body && body.errors, "");
  return problems;
}
